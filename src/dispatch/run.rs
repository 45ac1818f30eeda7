//! The dispatcher loop: claims due rows, applies [`super::policy`], hands each
//! message to one modem, records outcomes; and turns modem events (delivery
//! reports, incoming messages) into database rows.
//!
//! Wake-ups are hints (a PostgreSQL notification, a finished send); a jittered poll
//! guarantees progress. When nothing is due the loop sleeps: no busy loops.

use super::policy::{self, Candidate, QuietHours, RateWindow};
use super::steer::{Steering, Usage};
use crate::config::{Config, Limits};
use crate::modem::{ModemEvent, ModemHandle, ModemState, SendReport, StoredAt};
use crate::pdu::{self, Body, ConcatRef, SubmitOptions, Tpdu};
use crate::store::contract::{self, Verdict};
use crate::store::{
    Claimed, Completion, Delivery, Fragment, InboxMessage, PartRecord, ReportUpdate, Store,
};
use chrono::{DateTime, Duration as CDuration, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

/// One modem as the dispatcher tracks it.
pub struct Slot {
    pub handle: ModemHandle,
    pub group: Option<String>,
    pub limits: Limits,
    pub window: RateWindow,
    pub busy: bool,
    /// Failed sends since `failed_day` (local midnight), for the status view.
    pub failed_today: u32,
    pub failed_day: DateTime<Utc>,
    /// Removed from the configuration: takes no work, closes after its send in flight.
    pub retiring: bool,
}

/// A reloaded configuration (SIGHUP) with the modems the daemon started or
/// removed because of it.
pub struct Reload {
    pub cfg: Config,
    pub added: Vec<(crate::config::Modem, ModemHandle)>,
    pub removed: Vec<String>,
}

/// A send that finished.
struct Done {
    claimed: Claimed,
    modem: String,
    recipient: String,
    total: i32,
    report: SendReport,
    started: std::time::Instant,
    /// The parts this send carried, in order.
    seqs: Vec<u8>,
    /// The parts already recorded as they were acknowledged.
    recorded: Vec<u8>,
    /// When the parts were counted in the rate windows (see [`RateWindow::record`]).
    counted_at: DateTime<Utc>,
}

/// A message held as ambiguous because its modem did not answer for one part: if
/// the modem's late `+CMGS` arrives, that part was sent after all.
struct Doubt {
    id: i64,
    seq: u8,
    total: i32,
    recipient: String,
    report_requested: bool,
    since: DateTime<Utc>,
}

/// Records each part of a message in flight the moment the network acknowledged
/// it, and moves the row's "part on the wire" marker to the next part: a crash
/// mid-message then leaves the acknowledged parts recorded (never sent again) and
/// only the part that was really on the wire in doubt. `finish` records them again
/// (idempotent) in case a write here failed.
struct Progress {
    store: Store,
    owner: String,
    id: i64,
    lease_until: DateTime<Utc>,
    /// The parts being sent, in order.
    seqs: Vec<u8>,
    total: i32,
    modem: String,
    recipient: String,
    status: Delivery,
}

impl Progress {
    /// Records one acknowledged part; true when it is written.
    async fn acknowledged(&self, p: &crate::modem::PartSent) -> bool {
        let rec = PartRecord {
            seq: i32::from(p.seq),
            total: self.total,
            modem: self.modem.clone(),
            recipient: self.recipient.clone(),
            mr: p.mr,
            submitted_at: p.at,
            status: self.status,
        };
        if let Err(e) = self.store.record_part(self.id, &rec).await {
            warn!(id = self.id, error = %e, "cannot record a part yet; recorded when the message completes");
            return false;
        }
        // Only after the record: until then this part stays "on the wire". After
        // the last part the completion clears the marker (a crash in between holds
        // the row as ambiguous: conservative, and a window of milliseconds).
        let next = self.seqs.iter().skip_while(|s| **s != p.seq).nth(1);
        if let Some(next) = next {
            if let Err(e) = self
                .store
                .set_inflight(
                    &self.owner,
                    self.id,
                    Some(i32::from(*next)),
                    self.lease_until,
                )
                .await
            {
                debug!(id = self.id, error = %e, "in-flight marker not moved (stays conservative)");
            }
        }
        true
    }
}

/// The `smsgw_messages_total{outcome}` label of a completion.
fn outcome(c: &Completion) -> &'static str {
    use crate::store::State;
    match c.transition().state {
        State::Retrying => "retry",
        State::Queued => "held",
        other => other.as_str(),
    }
}

/// The dispatcher's state.
pub struct Dispatcher {
    pub cfg: Config,
    pub store: Store,
    /// This instance's name in leases (several instances may share a database).
    pub owner: String,
    pub slots: HashMap<String, Slot>,
    quiet: QuietHours,
    global: RateWindow,
    seed: u64,
    /// Concatenation reference for the next multipart message (wraps; references
    /// only need to differ between messages a handset receives close together).
    concat_ref: u8,
    /// Pauses, wake-ups, heartbeat and usage shared with the status socket.
    pub steer: Arc<Steering>,
    /// Per modem: the part whose send went unanswered (see [`Doubt`]).
    doubts: HashMap<String, Doubt>,
    /// Modem events whose write the database refused, oldest first.
    unrecorded: VecDeque<Unrecorded>,
    /// Delivery reports that matched no recorded part yet (see [`UNMATCHED_GRACE`]).
    unmatched: Vec<Unrecorded>,
}

impl Dispatcher {
    pub async fn new(
        cfg: Config,
        store: Store,
        owner: String,
        modems: Vec<(crate::config::Modem, ModemHandle)>,
        steer: Arc<Steering>,
    ) -> crate::store::Result<Dispatcher> {
        let quiet = QuietHours::from_config(&cfg.quiet_hours).expect("validated config");
        let now = Utc::now();
        let day_start = quiet.day_start(now);
        let sent: HashMap<String, i64> = store
            .parts_sent_since(day_start)
            .await?
            .into_iter()
            .collect();
        let slots = modems
            .into_iter()
            .map(|(m, handle)| {
                let today = sent.get(&m.id).copied().unwrap_or(0) as u32;
                let slot = Slot {
                    handle,
                    group: m.group.clone(),
                    limits: m.limits.unwrap_or(cfg.limits),
                    window: RateWindow::seeded(today, day_start),
                    busy: false,
                    failed_today: 0,
                    failed_day: day_start,
                    retiring: false,
                };
                (m.id, slot)
            })
            .collect();
        let total_today: i64 = sent.values().sum();
        Ok(Dispatcher {
            global: RateWindow::seeded(total_today as u32, day_start),
            quiet,
            slots,
            cfg,
            store,
            owner,
            seed: now.timestamp_micros() as u64,
            concat_ref: (now.timestamp_subsec_micros() % 256) as u8,
            steer,
            doubts: HashMap::new(),
            unrecorded: VecDeque::new(),
            unmatched: Vec::new(),
        }
        .publishing_usage())
    }

    fn publishing_usage(self) -> Self {
        for id in self.slots.keys() {
            self.publish_usage(id);
        }
        self
    }

    /// Tells the status socket what this modem has done today.
    fn publish_usage(&self, id: &str) {
        if let Some(slot) = self.slots.get(id) {
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

    /// Ready, configured, and not paused by an operator.
    fn usable(&self, id: &str, slot: &Slot) -> bool {
        !slot.retiring
            && slot.handle.status().state == ModemState::Ready
            && !self.steer.is_paused(id)
    }

    /// Applies what can change safely while running (SIGHUP): limits, quiet hours,
    /// opt-out and sending policy; modems added (their daily counts seeded from the
    /// database) and removed (closed once their send in flight is recorded). The
    /// database needs a restart.
    pub async fn reload(&mut self, r: Reload) {
        let new = r.cfg;
        let Some(quiet) = QuietHours::from_config(&new.quiet_hours) else {
            warn!("reload: invalid [quiet_hours]; keeping the old configuration");
            return;
        };
        if new.database.url != self.cfg.database.url {
            warn!("reload: [database] url changed; that needs a restart");
        }
        let now = Utc::now();
        let day_start = quiet.day_start(now);
        if !r.added.is_empty() {
            let sent: HashMap<String, i64> = match self.store.parts_sent_since(day_start).await {
                Ok(v) => v.into_iter().collect(),
                Err(e) => {
                    warn!(error = %e, "reload: daily counts unavailable; new modems start at 0");
                    HashMap::new()
                }
            };
            for (m, handle) in r.added {
                let today = sent.get(&m.id).copied().unwrap_or(0) as u32;
                self.slots.insert(
                    m.id.clone(),
                    Slot {
                        handle,
                        group: m.group.clone(),
                        limits: m.limits.unwrap_or(new.limits),
                        window: RateWindow::seeded(today, day_start),
                        busy: false,
                        failed_today: 0,
                        failed_day: day_start,
                        retiring: false,
                    },
                );
                self.publish_usage(&m.id);
            }
        }
        for id in r.removed {
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.retiring = true;
                if !slot.busy {
                    self.retire(&id).await;
                }
            }
        }
        for m in &new.modems {
            if let Some(slot) = self.slots.get_mut(&m.id) {
                slot.limits = m.limits.unwrap_or(new.limits);
                slot.group = m.group.clone();
            }
        }
        self.quiet = quiet;
        self.cfg.limits = new.limits;
        self.cfg.recipient_limits = new.recipient_limits;
        self.cfg.quiet_hours = new.quiet_hours;
        self.cfg.opt_out = new.opt_out;
        self.cfg.inbox = new.inbox;
        self.cfg.sending = new.sending;
        self.cfg.modems = new.modems;
        info!(
            modems = self.slots.len(),
            "configuration reloaded (limits, quiet hours, opt-out, sending, modems)"
        );
    }

    /// Closes a removed modem whose last send is recorded.
    async fn retire(&mut self, id: &str) {
        if let Some(slot) = self.slots.remove(id) {
            slot.handle.shutdown().await;
            info!(modem = %id, "modem closed (removed from the configuration)");
        }
    }

    /// Runs until `stop` turns true; then finishes the sends in flight and returns.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<ModemEvent>,
        mut stop: watch::Receiver<bool>,
        mut reload: mpsc::Receiver<Reload>,
    ) {
        let (done_tx, mut done_rx) = mpsc::channel::<Done>(64);
        let mut listener = match self.store.listener().await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "no insert notifications; polling only");
                None
            }
        };
        let poll = self.cfg.poll_interval();
        // Rescue expired leases at least twice per lease.
        let every = Duration::from_secs((self.cfg.sending.lease_secs / 2).clamp(1, 30));
        let mut housekeeping = tokio::time::interval(every);
        let mut in_flight = 0usize;
        let mut db_backoff = Duration::from_millis(500);
        let steer = self.steer.clone();
        loop {
            steer.beat();
            if *stop.borrow() {
                break;
            }
            if !self.unrecorded.is_empty() {
                self.retry_unrecorded().await;
            }
            match self.dispatch_due(&done_tx, &mut in_flight).await {
                Ok(()) => db_backoff = Duration::from_millis(500),
                Err(e) => {
                    warn!(error = %e, "database unavailable; retrying");
                    tokio::time::sleep(db_backoff).await;
                    db_backoff = (db_backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
            // Jitter so that several instances do not poll in lockstep.
            self.seed = self
                .seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let jitter = Duration::from_millis((self.seed >> 40) % 250);
            tokio::select! {
                _ = stop.changed() => {}
                _ = steer.woken() => {}
                _ = tokio::time::sleep(poll + jitter) => {}
                _ = async { match listener.as_mut() { Some(l) => { let _ = l.recv().await; } None => std::future::pending().await } } => {}
                Some(d) = done_rx.recv() => { in_flight -= 1; self.finish(d).await; }
                Some(ev) = events.recv() => self.on_event(ev).await,
                Some(r) = reload.recv() => self.reload(r).await,
                _ = housekeeping.tick() => self.housekeeping().await,
            }
        }
        // Graceful stop: no new claims; the parts in flight finish and are recorded.
        info!(in_flight, "stopping: finishing sends in flight");
        while in_flight > 0 {
            match tokio::time::timeout(Duration::from_secs(180), done_rx.recv()).await {
                Ok(Some(d)) => {
                    in_flight -= 1;
                    self.finish(d).await;
                }
                _ => break,
            }
        }
        while let Ok(ev) = events.try_recv() {
            self.on_event(ev).await;
        }
        self.retry_unrecorded().await;
        if !self.unrecorded.is_empty() {
            error!(
                left = self.unrecorded.len(),
                "stopping with modem events the database did not take (stored ones stay on the modems)"
            );
        }
    }

    async fn housekeeping(&mut self) {
        self.retry_unmatched().await;
        self.flush_incomplete().await;
        let now = Utc::now();
        match self.store.rescue_expired(now).await {
            Ok(r) if r.retrying + r.ambiguous > 0 => {
                warn!(
                    retrying = r.retrying,
                    ambiguous = r.ambiguous,
                    "rescued rows whose lease expired"
                )
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "lease rescue failed"),
        }
        let cutoff = now - CDuration::hours(i64::from(self.cfg.sending.report_timeout_hours));
        if let Err(e) = self.store.expire_pending_delivery(cutoff).await {
            warn!(error = %e, "delivery timeout update failed");
        }
    }

    fn free_modems(&self) -> usize {
        self.slots
            .iter()
            .filter(|(id, s)| !s.busy && self.usable(id, s))
            .count()
    }

    async fn dispatch_due(
        &mut self,
        done: &mpsc::Sender<Done>,
        in_flight: &mut usize,
    ) -> crate::store::Result<()> {
        let free = self.free_modems();
        if free == 0 {
            return Ok(());
        }
        let lease = Duration::from_secs(self.cfg.sending.lease_secs);
        let now = Utc::now();
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
            self.dispatch_one(c, done, in_flight).await?;
        }
        Ok(())
    }

    async fn complete(&self, id: i64, c: Completion) -> crate::store::Result<()> {
        metrics::counter!("smsgw_messages_total", "outcome" => outcome(&c)).increment(1);
        if !self.store.complete(&self.owner, id, &c, Utc::now()).await? {
            warn!(
                id,
                "row was taken from us (lease expired); outcome not written"
            );
        }
        Ok(())
    }

    async fn dispatch_one(
        &mut self,
        c: Claimed,
        done: &mpsc::Sender<Done>,
        in_flight: &mut usize,
    ) -> crate::store::Result<()> {
        let now = Utc::now();
        let s = &self.cfg.sending;
        let (recipient, body) = match contract::check(&c, s.max_parts, now) {
            Verdict::Send { recipient, body } => (recipient, body),
            Verdict::Reject(error) => {
                info!(id = c.id, %error, "rejected");
                return self.complete(c.id, Completion::Rejected { error }).await;
            }
            Verdict::Expire => {
                info!(id = c.id, "expired");
                return self.complete(c.id, Completion::Expired).await;
            }
        };
        if let Some(due) = self.quiet.held_until(&c.category, now) {
            debug!(id = c.id, category = %c.category, %due, "quiet hours");
            return self.complete(c.id, Completion::Release { due }).await;
        }
        if !self.cfg.opt_out.exempt_categories.contains(&c.category)
            && self.store.is_opted_out(&recipient).await?
        {
            info!(id = c.id, category = %c.category, "suppressed: the recipient opted out");
            return self
                .complete(
                    c.id,
                    Completion::Suppressed {
                        reason: "recipient opted out".into(),
                    },
                )
                .await;
        }
        // Per recipient per local day: all categories together, then the
        // message's own category. Counted from the database, across number forms.
        let day_start = self.quiet.day_start(now);
        let checks = [
            (None, self.cfg.limits.per_recipient_per_day),
            (
                Some(c.category.as_str()),
                self.cfg
                    .recipient_limits
                    .get(&c.category)
                    .copied()
                    .unwrap_or(0),
            ),
        ];
        for (category, max) in checks {
            if max == 0 {
                continue;
            }
            let sent = self
                .store
                .recipient_sent_since(&recipient, category, day_start)
                .await?;
            if sent >= i64::from(max) {
                let due = self.quiet.next_day(now);
                debug!(id = c.id, ?category, %due, "per-recipient daily limit");
                return self.complete(c.id, Completion::Release { due }).await;
            }
        }
        self.concat_ref = self.concat_ref.wrapping_add(1);
        let opts = SubmitOptions {
            smsc: None,
            request_report: c.request_report,
            validity_minutes: (s.validity_minutes > 0).then_some(s.validity_minutes),
            flash: c.flash,
            concat_ref: ConcatRef::Ref8(self.concat_ref),
            max_parts: s.max_parts,
            encoding: pdu::Encoding::Auto,
        };
        // Encoded once; parts the network already acknowledged are never sent again.
        let parts = match pdu::encode_submit(&recipient, &body, &opts) {
            Ok(p) => p,
            Err(e) => {
                return self
                    .complete(
                        c.id,
                        Completion::Rejected {
                            error: e.to_string(),
                        },
                    )
                    .await
            }
        };
        let total = parts.len();
        let parts: Vec<_> = parts
            .into_iter()
            .filter(|p| !c.parts_done.contains(&i32::from(p.seq)))
            .collect();
        let remaining = parts.len() as u32;
        // Route: a ready, idle modem in the row's group whose limits allow it now.
        let day_start = self.quiet.day_start(now);
        let next_day = self.quiet.next_day(now);
        let mut earliest = now + CDuration::seconds(2);
        let global_limits = Limits {
            per_minute: self.cfg.limits.global_per_minute,
            ..Limits::default()
        };
        if let Err(at) = self
            .global
            .check(&global_limits, remaining, now, day_start, next_day)
        {
            return self.complete(c.id, Completion::Release { due: at }).await;
        }
        let mut candidates = Vec::new();
        let paused: Vec<bool> = self
            .slots
            .iter()
            .map(|(id, s)| !self.usable(id, s))
            .collect();
        for ((id, slot), paused) in self.slots.iter_mut().zip(paused) {
            let allowed = match slot
                .window
                .check(&slot.limits, remaining, now, day_start, next_day)
            {
                Ok(()) => true,
                Err(at) => {
                    earliest = earliest.max(at).min(at.max(now + CDuration::seconds(2)));
                    false
                }
            };
            candidates.push(Candidate {
                id: id.clone(),
                ready: !paused,
                busy: slot.busy,
                group: slot.group.clone(),
                load: slot.window.today(),
                allowed,
            });
        }
        let Some(modem) =
            policy::route(&candidates, c.modem_group.as_deref()).map(|m| m.id.clone())
        else {
            return self
                .complete(c.id, Completion::Release { due: earliest })
                .await;
        };
        let first = parts.first().map(|p| i32::from(p.seq));
        // Mark the part about to go on the wire: if this process dies now, the rescuer
        // holds the row as ambiguous instead of sending it again.
        self.store
            .set_inflight(&self.owner, c.id, first, c.lease_until)
            .await?;
        // Counted now, so that the next routing decision (another modem, this same
        // claim) sees these parts; what does not go out is given back in `finish`.
        let slot = self.slots.get_mut(&modem).expect("routed to a known modem");
        slot.window.record(remaining, now, day_start);
        self.global.record(remaining, now, day_start);
        slot.busy = true;
        *in_flight += 1;
        let handle = slot.handle.clone();
        self.publish_usage(&modem);
        let done = done.clone();
        let total = total as i32;
        if self.cfg.log.bodies {
            debug!(id = c.id, %recipient, %body, "message body");
        }
        // How long a due message waited for a modem (insert or send_at, or its
        // retry time, to hand-over).
        let waited = (now - c.due_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!("smsgw_queue_wait_seconds").record(waited);
        let seqs: Vec<u8> = parts.iter().map(|p| p.seq).collect();
        let progress = Progress {
            store: self.store.clone(),
            owner: self.owner.clone(),
            id: c.id,
            lease_until: c.lease_until,
            seqs: parts.iter().map(|p| p.seq).collect(),
            total,
            modem: modem.clone(),
            recipient: recipient.clone(),
            status: Delivery::initial(c.request_report),
        };
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let (ptx, mut prx) = mpsc::unbounded_channel();
            let send = handle.send_with_progress(parts, Some(ptx));
            tokio::pin!(send);
            let mut recorded = Vec::new();
            let report = loop {
                tokio::select! {
                    r = &mut send => break r,
                    Some(p) = prx.recv() => if progress.acknowledged(&p).await { recorded.push(p.seq) },
                }
            };
            // Parts acknowledged just before the reply: their progress may still wait.
            while let Ok(p) = prx.try_recv() {
                if progress.acknowledged(&p).await {
                    recorded.push(p.seq);
                }
            }
            let _ = done
                .send(Done {
                    claimed: c,
                    modem: handle.id.clone(),
                    recipient,
                    total,
                    report,
                    started,
                    seqs,
                    recorded,
                    counted_at: now,
                })
                .await;
        });
        Ok(())
    }

    async fn finish(&mut self, d: Done) {
        let now = Utc::now();
        let day_start = self.quiet.day_start(now);
        // Parts that did not go out are given back to the rate windows; a part in
        // doubt (it may have reached the network) stays counted.
        let in_doubt = d
            .report
            .failure
            .as_ref()
            .is_some_and(|f| f.class == crate::at::classify::FailureClass::Ambiguous);
        let unsent =
            d.seqs
                .len()
                .saturating_sub(d.report.sent.len() + usize::from(in_doubt)) as u32;
        if let Some(slot) = self.slots.get_mut(&d.modem) {
            slot.busy = false;
            slot.window.release(unsent, d.counted_at);
            if slot.failed_day != day_start {
                slot.failed_day = day_start;
                slot.failed_today = 0;
            }
            if d.report.failure.is_some() {
                slot.failed_today += 1;
            }
        }
        self.publish_usage(&d.modem);
        self.global.release(unsent, d.counted_at);
        let modem_label = d.modem.clone();
        metrics::counter!("smsgw_parts_sent_total", "modem" => modem_label.clone())
            .increment(d.report.sent.len() as u64);
        metrics::histogram!("smsgw_send_duration_seconds", "modem" => modem_label.clone())
            .record(d.started.elapsed().as_secs_f64());
        if let Some(f) = &d.report.failure {
            let class = format!("{:?}", f.class).to_lowercase();
            metrics::counter!("smsgw_send_failures_total", "modem" => modem_label, "class" => class)
                .increment(1);
        }
        let id = d.claimed.id;
        for p in d
            .report
            .sent
            .iter()
            .filter(|p| !d.recorded.contains(&p.seq))
        {
            let rec = PartRecord {
                seq: i32::from(p.seq),
                total: d.total,
                modem: d.modem.clone(),
                recipient: d.recipient.clone(),
                mr: p.mr,
                submitted_at: p.at,
                status: Delivery::initial(d.claimed.request_report),
            };
            // Facts about the network: retried until written, they must never be lost.
            let mut wait = Duration::from_millis(200);
            while let Err(e) = self.store.record_part(id, &rec).await {
                warn!(id, error = %e, "cannot record a sent part; retrying");
                self.steer.beat();
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
        let completion = match &d.report.failure {
            None => {
                info!(id, modem = %d.modem, mrs = ?d.report.sent.iter().map(|p| p.mr).collect::<Vec<_>>(), "sent");
                Completion::Sent {
                    modem: d.modem.clone(),
                    parts_total: d.total,
                    report_requested: d.claimed.request_report,
                }
            }
            Some(f) => {
                self.seed = self.seed.wrapping_add(id as u64);
                let s = &self.cfg.sending;
                let c = policy::failure_completion(f, d.claimed.attempts, s, now, self.seed);
                info!(id, modem = %d.modem, class = ?f.class, reason = %f.reason, outcome = ?c, "send failed");
                c
            }
        };
        metrics::counter!("smsgw_messages_total", "outcome" => outcome(&completion)).increment(1);
        if let Completion::Ambiguous { .. } = completion {
            // The part in doubt: the first of this send the modem did not confirm.
            if let Some(&seq) = d
                .seqs
                .iter()
                .find(|s| !d.report.sent.iter().any(|p| p.seq == **s))
            {
                self.doubts.insert(
                    d.modem.clone(),
                    Doubt {
                        id,
                        seq,
                        total: d.total,
                        recipient: d.recipient.clone(),
                        report_requested: d.claimed.request_report,
                        since: now,
                    },
                );
            }
        }
        let mut wait = Duration::from_millis(200);
        loop {
            match self.store.complete(&self.owner, id, &completion, now).await {
                Ok(true) => break,
                Ok(false) => {
                    warn!(
                        id,
                        "row was taken from us (lease expired); outcome not written"
                    );
                    break;
                }
                Err(e) => {
                    warn!(id, error = %e, "cannot record the outcome; retrying");
                    self.steer.beat();
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
        if self.slots.get(&d.modem).is_some_and(|s| s.retiring) {
            self.retire(&d.modem).await;
        }
        if !self.unmatched.is_empty() {
            self.retry_unmatched().await;
        }
    }

    async fn delete(&self, modem: &str, stored: Option<StoredAt>) {
        if let (Some(at), Some(slot)) = (stored, self.slots.get(modem)) {
            if let Err(e) = slot.handle.delete(at).await {
                warn!(modem, error = %e, "could not delete a stored message (it will be read again, and deduplicated)");
            }
        }
    }

    async fn on_event(&mut self, ev: ModemEvent) {
        match ev {
            ModemEvent::StatusReport {
                modem,
                pdu,
                raw,
                stored,
            } => match pdu.map(|d| d.tpdu) {
                Ok(Tpdu::StatusReport(sr)) => {
                    let now = Utc::now();
                    let status = if !sr.status.is_final {
                        Delivery::Pending
                    } else if sr.status.delivered {
                        Delivery::Delivered
                    } else {
                        Delivery::Failed
                    };
                    let update = ReportUpdate {
                        modem: modem.clone(),
                        mr: sr.message_reference,
                        recipient: sr.recipient.number.clone(),
                        since: now
                            - CDuration::hours(i64::from(self.cfg.sending.report_timeout_hours)),
                        tp_status: sr.status.raw,
                        status,
                        report_at: now,
                        discharge_at: sr.discharge_time.to_utc().unwrap_or(now),
                    };
                    metrics::counter!("smsgw_delivery_reports_total", "status" => status.as_str())
                        .increment(1);
                    info!(modem = %modem, mr = update.mr, status = %sr.status.meaning, "delivery report received");
                    self.record(Unrecorded::Report { update, stored }).await;
                }
                _ => {
                    warn!(modem = %modem, raw = %raw, "undecodable status report dropped");
                    self.delete(&modem, stored).await;
                }
            },
            ModemEvent::Incoming {
                modem,
                pdu,
                raw,
                stored,
            } => match self.incoming(&modem, pdu, &raw) {
                Some(w) => self.record(w.stored_at(stored)).await,
                None => self.delete(&modem, stored).await,
            },
            ModemEvent::LateSubmit { modem, mr } => self.late_submit(&modem, mr).await,
        }
    }

    /// Writes what a modem reported; a write the database refuses joins
    /// `unrecorded` (in order) and is retried before the next claim.
    async fn record(&mut self, w: Unrecorded) {
        if !self.unrecorded.is_empty() {
            return self.keep(w);
        }
        if let Some(w) = self.try_record(w).await {
            self.keep(w);
        }
    }

    fn keep(&mut self, w: Unrecorded) {
        if self.unrecorded.len() >= MAX_UNRECORDED {
            if let Some(old) = self.unrecorded.pop_front() {
                error!(what = ?old, "too many unrecorded modem events while the database is down; dropped the oldest");
            }
        }
        self.unrecorded.push_back(w);
        self.steer.set_unrecorded(self.unrecorded.len());
    }

    /// Retries the writes the database refused, oldest first, until one fails again.
    async fn retry_unrecorded(&mut self) {
        let before = self.unrecorded.len();
        while let Some(w) = self.unrecorded.pop_front() {
            if let Some(w) = self.try_record(w).await {
                self.unrecorded.push_front(w);
                break;
            }
        }
        self.steer.set_unrecorded(self.unrecorded.len());
        if self.unrecorded.len() < before {
            info!(
                recorded = before - self.unrecorded.len(),
                left = self.unrecorded.len(),
                "modem events kept while the database was down"
            );
        }
    }

    /// Tries again the reports that matched no recorded part (until their grace
    /// period ends: then they are dropped with a warning).
    async fn retry_unmatched(&mut self) {
        for w in std::mem::take(&mut self.unmatched) {
            if let Some(w) = self.try_record(w).await {
                self.keep(w);
            }
        }
    }

    /// One write; what is left to do if the database refused it. A modem's stored
    /// copy is deleted only once its write is done.
    async fn try_record(&mut self, mut w: Unrecorded) -> Option<Unrecorded> {
        loop {
            let (modem, stored) = match w {
                Unrecorded::Report { update, stored } => {
                    match self.store.apply_report(&update).await {
                        Ok(Some(id)) => {
                            info!(id, modem = %update.modem, mr = update.mr, status = update.status.as_str(), "delivery report recorded")
                        }
                        Ok(None) if Utc::now() - update.report_at < UNMATCHED_GRACE => {
                            // Its part may not be recorded yet (acknowledged while
                            // the database was down): tried again after each
                            // finished send and at housekeeping.
                            debug!(modem = %update.modem, mr = update.mr, "delivery report matches no recorded part yet; kept");
                            self.unmatched.push(Unrecorded::Report { update, stored });
                            return None;
                        }
                        Ok(None) => {
                            warn!(modem = %update.modem, mr = update.mr, to = %update.recipient, "delivery report matches no sent part")
                        }
                        Err(e) => {
                            warn!(error = %e, "cannot record a delivery report yet; kept and retried");
                            return Some(Unrecorded::Report { update, stored });
                        }
                    }
                    (update.modem, stored)
                }
                Unrecorded::Fragment { fragment, stored } => {
                    match self.store.add_fragment(&fragment).await {
                        // Kept in the database until the rest arrives.
                        Ok(None) => (fragment.modem, stored),
                        Ok(Some(all)) => {
                            // The fragments left the database with this answer: from
                            // here the whole message is what must not be lost.
                            w = Unrecorded::Inbox {
                                message: self.joined(&all),
                                stored,
                            };
                            continue;
                        }
                        Err(e) => {
                            warn!(error = %e, "cannot store a message fragment yet; kept and retried");
                            return Some(Unrecorded::Fragment { fragment, stored });
                        }
                    }
                }
                Unrecorded::Inbox { message, stored } => {
                    if let Err(e) = self.store_inbox(&message).await {
                        warn!(error = %e, "cannot store an incoming message yet; kept and retried");
                        return Some(Unrecorded::Inbox { message, stored });
                    }
                    (message.modem, stored)
                }
            };
            self.delete(&modem, stored).await;
            return None;
        }
    }

    /// The modem confirmed, after its timeout, the part that left a message
    /// ambiguous: record it with its reference (so its delivery report matches),
    /// then the message is `sent` if every part is now recorded, or goes back to
    /// the queue for the parts never attempted (none of them can be a duplicate).
    async fn late_submit(&mut self, modem: &str, mr: u8) {
        let now = Utc::now();
        let Some(doubt) = self.doubts.remove(modem) else {
            warn!(modem, mr, "late +CMGS for no message in doubt; ignored");
            return;
        };
        if now - doubt.since > CDuration::minutes(30) {
            warn!(
                modem,
                mr,
                id = doubt.id,
                "late +CMGS too late to trust; the message stays ambiguous"
            );
            return;
        }
        let id = doubt.id;
        let rec = PartRecord {
            seq: i32::from(doubt.seq),
            total: doubt.total,
            modem: modem.to_string(),
            recipient: doubt.recipient.clone(),
            mr: Some(mr),
            submitted_at: now,
            status: Delivery::initial(doubt.report_requested),
        };
        let outcome = async {
            self.store.record_part(id, &rec).await?;
            let recorded = self.store.parts(id).await?.len() as i32;
            if recorded >= doubt.total {
                let delivery = Delivery::initial(doubt.report_requested);
                self.store
                    .resolve_sent(id, modem, doubt.total, delivery, now)
                    .await
                    .map(|ok| {
                        if ok {
                            "sent"
                        } else {
                            "left as an operator set it"
                        }
                    })
            } else {
                self.store
                    .operate(id, crate::store::OperatorAction::ReleaseResend, now)
                    .await
                    .map(|ok| {
                        if ok {
                            "queued for its remaining parts"
                        } else {
                            "left as an operator set it"
                        }
                    })
            }
        }
        .await;
        match outcome {
            Ok(what) => {
                info!(
                    id,
                    modem,
                    mr,
                    part = doubt.seq,
                    outcome = what,
                    "late +CMGS resolved an ambiguous message"
                );
                self.steer.wake();
            }
            Err(e) => {
                warn!(id, modem, mr, error = %e, "late +CMGS not recorded; the message stays ambiguous")
            }
        }
    }

    /// What an incoming PDU asks to be written: a fragment to keep until the rest
    /// arrives, or a whole message for the inbox (None: nothing; delete it).
    fn incoming(
        &self,
        modem: &str,
        pdu: Result<pdu::Decoded, String>,
        raw: &str,
    ) -> Option<Unrecorded> {
        let now = Utc::now();
        let (sender, body, received_at, concat) = match pdu.map(|d| d.tpdu) {
            Ok(Tpdu::Deliver(x)) => {
                let body = match &x.user_data.body {
                    Body::Text(t) => t.clone(),
                    Body::Data(d) => format!("(binary) {}", pdu::to_hex(d)),
                };
                let at: DateTime<Utc> = x.scts.to_utc().unwrap_or(now);
                (x.originator.number.clone(), body, at, x.user_data.concat())
            }
            Ok(_) => return None,
            Err(e) => (
                "unknown".to_string(),
                format!("(undecodable PDU: {e}) {raw}"),
                now,
                None,
            ),
        };
        Some(match concat.filter(|c| c.total > 1) {
            None => Unrecorded::Inbox {
                message: self.inbox_message(modem, sender, body, received_at),
                stored: None,
            },
            Some(c) => Unrecorded::Fragment {
                fragment: Fragment {
                    modem: modem.to_string(),
                    sender,
                    concat_ref: i32::from(c.reference),
                    total: i32::from(c.total),
                    seq: i32::from(c.seq),
                    body,
                    received_at,
                },
                stored: None,
            },
        })
    }

    fn inbox_message(
        &self,
        modem: &str,
        sender: String,
        body: String,
        received_at: DateTime<Utc>,
    ) -> InboxMessage {
        InboxMessage {
            modem: modem.to_string(),
            opt_out: policy::is_opt_out(&body, &self.cfg.opt_out.keywords),
            sender,
            body,
            parts: 1,
            missing_parts: 0,
            received_at,
        }
    }

    /// The message made of the parts of one concatenated message (all of them, or
    /// those that arrived). Received when its first part was.
    fn joined(&self, fragments: &[Fragment]) -> InboxMessage {
        let first = &fragments[0];
        let (body, missing) = crate::store::join_fragments(first.total, fragments);
        let received_at = fragments
            .iter()
            .map(|f| f.received_at)
            .min()
            .unwrap_or(first.received_at);
        InboxMessage {
            parts: first.total,
            missing_parts: missing,
            ..self.inbox_message(&first.modem, first.sender.clone(), body, received_at)
        }
    }

    /// Stores the incoming messages whose missing parts did not arrive within
    /// `[inbox] incomplete_after_minutes` with the parts that did. They stay in
    /// the database until then: a failed write is tried at the next housekeeping.
    async fn flush_incomplete(&mut self) {
        let wait = CDuration::minutes(i64::from(self.cfg.inbox.incomplete_after_minutes));
        let groups = match self.store.stale_fragments(Utc::now() - wait).await {
            Ok(g) => g,
            Err(e) => return warn!(error = %e, "cannot look for incomplete incoming messages"),
        };
        for g in groups {
            let m = self.joined(&g.fragments);
            let stored = match self.store_inbox(&m).await {
                Ok(()) => self.store.delete_fragments(&g.ids).await,
                Err(e) => Err(e),
            };
            match stored {
                Ok(()) => warn!(
                    modem = %m.modem, from = %m.sender, parts = m.parts, missing = m.missing_parts,
                    "incoming message stored incomplete: the network did not deliver its other parts"
                ),
                Err(e) => {
                    warn!(error = %e, "cannot store an incomplete incoming message yet; tried again later")
                }
            }
        }
    }

    /// Stores a whole incoming message and, for an opt-out reply, the opt-out.
    /// Safe to repeat: the inbox ignores a message it already holds.
    async fn store_inbox(&self, m: &InboxMessage) -> crate::store::Result<()> {
        if self.store.insert_inbox(m).await? {
            info!(modem = %m.modem, from = %m.sender, parts = m.parts, opt_out = m.opt_out, "incoming message");
            if self.cfg.log.bodies {
                debug!(modem = %m.modem, from = %m.sender, body = %m.body, "incoming body");
            }
            metrics::counter!("smsgw_incoming_messages_total", "modem" => m.modem.clone())
                .increment(1);
        }
        if m.opt_out {
            self.store
                .add_opt_out(&m.sender, Some(m.body.trim()), "sms")
                .await?;
            info!(recipient = %m.sender, "opted out");
        }
        Ok(())
    }
}

/// A write for something a modem reported, kept while the database refuses it. The
/// modem's stored copy (if any) is deleted only after the write; a routed report
/// or message exists only here, so it must not be dropped on a database error.
#[derive(Debug)]
enum Unrecorded {
    Report {
        update: ReportUpdate,
        stored: Option<StoredAt>,
    },
    Fragment {
        fragment: Fragment,
        stored: Option<StoredAt>,
    },
    Inbox {
        message: InboxMessage,
        stored: Option<StoredAt>,
    },
}

impl Unrecorded {
    fn stored_at(mut self, at: Option<StoredAt>) -> Self {
        match &mut self {
            Unrecorded::Report { stored, .. }
            | Unrecorded::Fragment { stored, .. }
            | Unrecorded::Inbox { stored, .. } => *stored = at,
        }
        self
    }
}

/// How long a delivery report that matches no recorded part is kept and tried
/// again: its part may be recorded late (acknowledged while the database was down,
/// written when it returned). A report that still matches nothing is not ours.
const UNMATCHED_GRACE: CDuration = CDuration::minutes(3);

/// How many unrecorded modem events are kept during a database outage (reports
/// and incoming messages: far more than a pool receives in hours).
const MAX_UNRECORDED: usize = 10_000;
