//! The dispatcher's shell: the loop that claims due rows, fetches the facts the
//! decision [`Core`] asks for, applies its decisions (hand a message to a
//! modem, release, reject, suppress, expire), and feeds send outcomes back.
//! All I/O is here; every decision is the core's.
//!
//! Wake-ups are hints (a change the store watch saw: a PostgreSQL notification,
//! SQLite's data_version, MariaDB's id watermark; a finished send; an operator);
//! a jittered poll guarantees progress. When nothing is due the loop sleeps.
//! Leases are renewed while sends are in flight; expired ones (another
//! instance died) are settled at every housekeeping.

use super::clock::Clock;
use super::core::{Core, Decision, Facts, Finished, ModemSpec, Plan, Prepared, Rules};
use super::policy::WindowLimits;
use super::retry::until_written;
use super::send::{self, Sent};
use super::steer::{Steering, Usage};
use crate::config::Config;
use crate::modem::{ModemHandle, ModemState};
use crate::store::contract::clip;
use crate::store::{Claimed, Completion, State, Store};
use chrono::Duration as CDuration;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

pub use super::reload::Reload;

/// A send that finished.
pub(super) struct Done {
    claimed: Claimed,
    modem: String,
    total: i32,
    recipient: String,
    /// The parts the plan carried, in order.
    seqs: Vec<u8>,
    counted_at: chrono::DateTime<chrono::Utc>,
    sent: Sent,
}

/// The `smsgw_messages_total{outcome}` label of a completion.
fn outcome(c: &Completion) -> &'static str {
    match c.transition().state {
        State::Retrying => "retry",
        State::Queued => "held",
        other => other.as_str(),
    }
}

/// The dispatcher.
pub struct Dispatcher {
    pub(super) cfg: Config,
    pub store: Store,
    /// This instance's identity in leases (several instances may share a database).
    pub owner: String,
    pub(super) core: Core,
    pub(super) handles: BTreeMap<String, ModemHandle>,
    /// Pauses, wake-ups, heartbeat and usage shared with the status socket.
    pub steer: Arc<Steering>,
    pub(super) clock: Clock,
    sends: JoinSet<Done>,
    /// Poll jitter, so several instances do not poll in lockstep.
    jitter: u64,
    journal: super::journal::Shared,
    /// Told of every row this instance brought to a final state, after commit.
    hooks: crate::hooks::Hooks,
}

impl Dispatcher {
    /// Hooks to run after outcomes are committed (`[hooks]`).
    pub fn with_hooks(mut self, hooks: crate::hooks::Hooks) -> Dispatcher {
        self.hooks = hooks;
        self
    }

    pub async fn new(
        cfg: Config,
        store: Store,
        owner: String,
        modems: Vec<(crate::config::Modem, ModemHandle)>,
        steer: Arc<Steering>,
        clock: Clock,
        journal: super::journal::Shared,
    ) -> crate::store::Result<Dispatcher> {
        let rules = Rules::from_config(&cfg).expect("validated config");
        let now = clock.db();
        let day_start = rules.quiet.day_start(now);
        let sent: HashMap<String, i64> = store
            .parts_sent_since(day_start)
            .await?
            .into_iter()
            .collect();
        let specs = modems
            .iter()
            .map(|(m, _)| ModemSpec {
                id: m.id.clone(),
                group: m.group.clone(),
                limits: WindowLimits::modem(&m.limits.unwrap_or(cfg.limits)),
                sent_today: sent.get(&m.id).copied().unwrap_or(0).max(0) as u32,
            })
            .collect();
        let seed = now.timestamp_micros() as u64;
        let d = Dispatcher {
            core: Core::new(rules, specs, seed, now),
            handles: modems.into_iter().map(|(m, h)| (m.id, h)).collect(),
            cfg,
            store,
            owner,
            steer,
            clock,
            sends: JoinSet::new(),
            jitter: seed,
            journal,
            hooks: Default::default(),
        };
        for id in d.handles.keys() {
            d.publish_usage(id);
        }
        Ok(d)
    }

    /// Tells the status socket what this modem has done today.
    pub(super) fn publish_usage(&self, id: &str) {
        if let Some(slot) = self.core.slots.get(id) {
            self.steer.set_usage(
                id,
                Usage {
                    sent_today: slot.window.today(),
                    failed_today: slot.failed_today,
                    per_day: slot.limits.per_day,
                    busy: slot.busy,
                },
            );
        }
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.cfg.sending.lease_secs)
    }

    fn lease_until(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.db()
            + CDuration::from_std(self.lease()).unwrap_or_else(|_| CDuration::seconds(60))
    }

    /// Runs until `stop` turns true; then finishes the sends in flight and
    /// returns. An error: a send task died (a bug), and the daemon must stop.
    pub async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        mut reload: mpsc::Receiver<Reload>,
    ) -> Result<(), String> {
        let watch = match self.store.watch().await {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "cannot watch the outbox; picking up by polling only");
                None
            }
        };
        let poll = self.cfg.poll_interval();
        let lease_secs = self.cfg.sending.lease_secs;
        // Settle expired leases at least twice per lease.
        let every = Duration::from_secs((lease_secs / 2).clamp(1, 30));
        let mut housekeeping = tokio::time::interval(every);
        let mut renew = tokio::time::interval(Duration::from_secs((lease_secs / 3).max(1)));
        // Also when the next lease expires: a dead instance's rows are taken over
        // as their lease ends.
        let mut rescue_at = tokio::time::Instant::now() + every;
        let mut db_backoff = Duration::from_millis(500);
        let steer = self.steer.clone();
        loop {
            steer.beat();
            crate::failpoint::hit("dispatcher_loop");
            if *stop.borrow() {
                break;
            }
            match self.dispatch_due().await {
                Ok(()) => db_backoff = Duration::from_millis(500),
                Err(e) => {
                    warn!(error = %e, "database unavailable; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(db_backoff) => {}
                        _ = stop.changed() => {}
                    }
                    db_backoff = (db_backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
            self.jitter = self
                .jitter
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let jitter = Duration::from_millis((self.jitter >> 40) % 250);
            tokio::select! {
                _ = stop.changed() => {}
                _ = steer.woken() => {}
                _ = tokio::time::sleep(poll + jitter) => {}
                _ = async { match &watch { Some(w) => w.changed().await, None => std::future::pending().await } } => {}
                Some(joined) = self.sends.join_next(), if !self.sends.is_empty() => {
                    // Sends that finished together are recorded together, and
                    // their modems are given work by one claim.
                    let (mut done, mut died) = (Vec::new(), None);
                    let mut next = Some(joined);
                    while let Some(j) = next {
                        match j {
                            Ok(d) => done.push(d),
                            Err(e) => died = died.or(Some(format!("a send task died: {e}"))),
                        }
                        next = self.sends.try_join_next();
                    }
                    // The sends that did finish are recorded before a dead one
                    // stops the daemon.
                    self.finish(done).await;
                    if let Some(e) = died {
                        return Err(e);
                    }
                }
                Some(r) = reload.recv() => self.reload(r).await,
                _ = housekeeping.tick() => {
                    self.housekeeping().await;
                    rescue_at = self.next_rescue(every).await;
                }
                _ = tokio::time::sleep_until(rescue_at) => {
                    self.rescue().await;
                    rescue_at = self.next_rescue(every).await;
                }
                _ = renew.tick(), if !self.sends.is_empty() => {
                    let until = self.lease_until();
                    if let Err(e) = self.store.renew_leases(&self.owner, until).await {
                        warn!(error = %e, "cannot renew the leases of the messages in flight");
                    }
                }
            }
        }
        // Graceful stop: no new claims; the parts in flight finish and are recorded.
        info!(
            in_flight = self.sends.len(),
            "stopping: finishing sends in flight"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        while !self.sends.is_empty() {
            match tokio::time::timeout_at(deadline, self.sends.join_next()).await {
                Ok(Some(Ok(d))) => self.finish(vec![d]).await,
                Ok(Some(Err(e))) => return Err(format!("a send task died: {e}")),
                _ => break,
            }
        }
        Ok(())
    }

    /// Measures the database's clock; settles rows whose lease expired; delivery
    /// reports that never came.
    async fn housekeeping(&mut self) {
        let before = self.clock.local();
        match self.store.db_now().await {
            Ok(db) => self.clock.observe(before, db, self.clock.local()),
            Err(e) => return warn!(error = %e, "cannot read the database's clock"),
        }
        self.rescue().await;
        let now = self.clock.db();
        let cutoff = now - CDuration::hours(i64::from(self.cfg.sending.report_timeout_hours));
        if let Err(e) = self.store.expire_pending_delivery(cutoff).await {
            warn!(error = %e, "delivery timeout update failed");
        }
    }

    /// Settles the rows whose lease expired (their holder stopped).
    async fn rescue(&mut self) {
        match self.store.rescue_expired(self.clock.db()).await {
            Ok(r) if r.retrying + r.ambiguous + r.sent > 0 => {
                warn!(
                    retrying = r.retrying,
                    ambiguous = r.ambiguous,
                    sent = r.sent,
                    "settled rows whose lease expired (their holder stopped)"
                )
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "lease rescue failed"),
        }
    }

    /// When to look for expired leases next: as the next one expires, at the
    /// latest after `every`.
    async fn next_rescue(&self, every: Duration) -> tokio::time::Instant {
        let latest = tokio::time::Instant::now() + every;
        match self.store.next_lease_expiry().await {
            Ok(Some(t)) => {
                let wait = (t - self.clock.db() + CDuration::milliseconds(50))
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                (tokio::time::Instant::now() + wait).min(latest)
            }
            _ => latest,
        }
    }

    /// Ready, configured, and not paused by an operator.
    fn usable(&self) -> impl Fn(&str) -> bool + '_ {
        move |id: &str| {
            self.handles
                .get(id)
                .is_some_and(|h| h.status().state == ModemState::Ready)
                && !self.steer.is_paused(id)
        }
    }

    async fn dispatch_due(&mut self) -> crate::store::Result<()> {
        let free = self.core.free(&self.usable());
        if free == 0 {
            return Ok(());
        }
        let lease = self.lease();
        let now = self.clock.db();
        // Urgent categories first (reminders before a campaign), then everything.
        let urgent = &self.cfg.sending.urgent_categories;
        let mut claimed = if urgent.is_empty() {
            Vec::new()
        } else {
            self.store
                .claim_only(&self.owner, free as u32, lease, now, urgent)
                .await?
        };
        let rest = free.saturating_sub(claimed.len());
        if rest > 0 {
            claimed.extend(
                self.store
                    .claim(&self.owner, rest as u32, lease, now)
                    .await?,
            );
        }
        for c in claimed {
            self.dispatch_one(c).await?;
        }
        Ok(())
    }

    async fn dispatch_one(&mut self, c: Claimed) -> crate::store::Result<()> {
        let decision = match self.core.prepare(&c, self.clock.db()) {
            Prepared::Decided(d) => d,
            Prepared::Needs(needs) => {
                let mut facts = Facts {
                    opted_out: needs.opt_out && self.store.is_opted_out(&needs.recipient).await?,
                    sent: Vec::with_capacity(needs.counts.len()),
                };
                for (category, _) in &needs.counts {
                    facts.sent.push(
                        self.store
                            .recipient_sent_since(
                                &needs.recipient,
                                category.as_deref(),
                                needs.since,
                            )
                            .await?,
                    );
                }
                let now = self.clock.db();
                let handles = &self.handles;
                let steer = &self.steer;
                let usable = |id: &str| {
                    handles
                        .get(id)
                        .is_some_and(|h| h.status().state == ModemState::Ready)
                        && !steer.is_paused(id)
                };
                self.core.decide(&c, needs, &facts, &usable, now)
            }
        };
        self.apply(c, decision).await
    }

    async fn apply(&mut self, c: Claimed, d: Decision) -> crate::store::Result<()> {
        let completion = match d {
            Decision::Send(plan) => return self.hand_over(c, plan).await,
            Decision::Reject(error) => {
                info!(id = c.id, error = %clip(&error, 200), "rejected");
                Completion::Rejected { error }
            }
            Decision::Expire => {
                info!(id = c.id, "expired");
                Completion::Expired
            }
            Decision::Suppress(reason) => {
                info!(id = c.id, category = %c.category.escape_debug(), "suppressed: the recipient opted out");
                Completion::Suppressed { reason }
            }
            Decision::Release { due, why } => {
                debug!(id = c.id, ?why, %due, "released");
                Completion::Release { due }
            }
        };
        metrics::counter!("smsgw_messages_total", "outcome" => outcome(&completion)).increment(1);
        if self
            .store
            .complete(&self.owner, c.id, &completion, self.clock.db())
            .await?
        {
            self.hooks.emit(crate::hooks::Event::Final { id: c.id });
        } else {
            warn!(
                id = c.id,
                "row was taken from us (lease expired); outcome not written"
            );
        }
        Ok(())
    }

    /// Marks the row as on its modem (part, modem, parts, renewed lease) and
    /// starts the send; a row that is no longer ours is not sent.
    async fn hand_over(&mut self, c: Claimed, plan: Plan) -> crate::store::Result<()> {
        let Some(first) = plan.parts.first().map(|p| i32::from(p.seq)) else {
            // Every part was acknowledged before (a resumed row): it is sent.
            self.core.abandon(&plan);
            let done = Completion::Sent {
                modem: plan.modem.clone(),
                parts_total: plan.total,
                report_requested: c.request_report,
            };
            if self
                .store
                .complete(&self.owner, c.id, &done, self.clock.db())
                .await?
            {
                self.hooks.emit(crate::hooks::Event::Final { id: c.id });
            }
            return Ok(());
        };
        let ours = match self
            .store
            .hand_over(
                &self.owner,
                c.id,
                first,
                &plan.modem,
                plan.total,
                self.lease_until(),
                self.clock.db(),
            )
            .await
        {
            Ok(ours) => ours,
            Err(e) => {
                self.core.abandon(&plan);
                return Err(e);
            }
        };
        crate::failpoint::hit("after_hand_over");
        if !ours {
            warn!(id = c.id, "row was taken from us before its send; not sent");
            self.core.abandon(&plan);
            return Ok(());
        }
        let Some(handle) = self.handles.get(&plan.modem).cloned() else {
            self.core.abandon(&plan);
            return Ok(());
        };
        self.publish_usage(&plan.modem);
        if self.cfg.log.bodies {
            debug!(id = c.id, recipient = %plan.recipient.escape_debug(), body = %plan.body.escape_debug(), "message body");
        }
        // How long a due message waited for a modem (insert or send_at, or its
        // retry time, to hand-over).
        let waited = (plan.counted_at - c.due_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!("smsgw_queue_wait_seconds").record(waited);
        let job = send::Job {
            id: c.id,
            owner: self.owner.clone(),
            modem: handle,
            parts: plan.parts.clone(),
            total: plan.total,
            recipient: plan.recipient.clone(),
            report_requested: c.request_report,
            lease: self.lease(),
            clock: self.clock.clone(),
            store: self.store.clone(),
            journal: self.journal.clone(),
        };
        let seqs = plan.parts.iter().map(|p| p.seq).collect();
        let (modem, total, recipient, counted_at) =
            (plan.modem, plan.total, plan.recipient, plan.counted_at);
        self.sends.spawn(async move {
            let sent = send::run(job).await;
            Done {
                claimed: c,
                modem,
                total,
                recipient,
                seqs,
                counted_at,
                sent,
            }
        });
        Ok(())
    }

    /// Records sends that finished: for each, the parts acknowledged but not
    /// yet recorded, then every outcome in one transaction.
    async fn finish(&mut self, done: Vec<Done>) {
        if done.is_empty() {
            return;
        }
        let now = self.clock.db();
        let mut outcomes = Vec::with_capacity(done.len());
        for d in &done {
            let completion = self.outcome_of(d, now).await;
            outcomes.push((d.claimed.id, completion));
        }
        let (store, owner) = (&self.store, &self.owner);
        match until_written("recording outcomes", &self.steer, || {
            store.complete_all(owner, &outcomes, now)
        })
        .await
        {
            Ok(ours) => {
                for ((id, completion), ours) in outcomes.iter().zip(ours) {
                    let ours = match ours {
                        // Written alone after the batch failed, and the
                        // database was away then: tried again, alone.
                        Err(e) if e.is_transient() => {
                            until_written("recording an outcome", &self.steer, || {
                                store.complete(owner, *id, completion, now)
                            })
                            .await
                        }
                        other => other,
                    };
                    match ours {
                        Ok(true) => self.hooks.emit(crate::hooks::Event::Final { id: *id }),
                        Ok(false) => warn!(
                            id,
                            "row was taken from us (lease expired); outcome not written"
                        ),
                        Err(e) => error!(id, error = %e, "the outcome cannot be recorded"),
                    }
                }
            }
            Err(e) => {
                for (id, _) in &outcomes {
                    error!(id, error = %e, "the outcome cannot be recorded");
                }
            }
        }
        for d in done {
            if self.core.retire_if_done(&d.modem) {
                self.retire(&d.modem).await;
            }
        }
    }

    /// One finished send's outcome, decided by the core; its metrics and log
    /// line; and the parts the network acknowledged that were not recorded as
    /// they went (the database was slow): facts, written whatever happens.
    async fn outcome_of(&mut self, d: &Done, now: chrono::DateTime<chrono::Utc>) -> Completion {
        let report = &d.sent.report;
        let completion = self.core.finished(
            &d.claimed,
            &Finished {
                modem: &d.modem,
                planned: d.seqs.len(),
                sent: report.sent.len(),
                failure: report.failure.as_ref(),
                counted_at: d.counted_at,
            },
            d.total,
            now,
        );
        self.publish_usage(&d.modem);
        let label = d.modem.clone();
        metrics::counter!("smsgw_parts_sent_total", "modem" => label.clone())
            .increment(report.sent.len() as u64);
        metrics::histogram!("smsgw_send_duration_seconds", "modem" => label.clone())
            .record(d.sent.started.elapsed().as_secs_f64());
        if let Some(f) = &report.failure {
            let class = format!("{:?}", f.class).to_lowercase();
            metrics::counter!("smsgw_send_failures_total", "modem" => label, "class" => class)
                .increment(1);
        }
        let id = d.claimed.id;
        // Parts acknowledged but not recorded as they went (the database was
        // slow): facts about the network, written whatever happens.
        for p in report
            .sent
            .iter()
            .filter(|p| !d.sent.recorded.contains(&p.seq))
        {
            let rec = crate::store::PartRecord {
                seq: i32::from(p.seq),
                total: d.total,
                modem: d.modem.clone(),
                recipient: d.recipient.clone(),
                mr: p.mr,
                submitted_at: p.at,
                status: crate::store::Delivery::initial(d.claimed.request_report),
            };
            let store = &self.store;
            if let Err(e) = until_written("recording a sent part", &self.steer, || {
                store.record_part(id, &rec)
            })
            .await
            {
                error!(id, part = p.seq, error = %e, "a sent part cannot be recorded");
            }
        }
        match &report.failure {
            None => {
                info!(id, modem = %d.modem, mrs = ?report.sent.iter().map(|p| p.mr).collect::<Vec<_>>(), "sent")
            }
            Some(f) => {
                info!(id, modem = %d.modem, class = ?f.class, reason = %f.reason, outcome = ?completion, "send failed")
            }
        }
        metrics::counter!("smsgw_messages_total", "outcome" => outcome(&completion)).increment(1);
        completion
    }

    /// Closes a removed modem whose last send is recorded.
    pub(super) async fn retire(&mut self, id: &str) {
        if let Some(h) = self.handles.remove(id) {
            h.shutdown().await;
            info!(modem = %id, "modem closed (removed from the configuration)");
        }
    }
}
