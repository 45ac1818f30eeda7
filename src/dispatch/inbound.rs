//! The recorder of what the modems hear: delivery reports, incoming messages
//! (reassembled through the database), and late `+CMGS` answers that resolve an
//! ambiguous send. Its own task, so that neither a busy dispatcher nor a
//! database outage ever stops a modem from reading its port.
//!
//! Order and durability: events are recorded in the order they came. One the
//! database does not take at once goes to the [`Journal`](super::journal::Journal) (synced to disk) and
//! waits there with everything after it; memory holds only a window of it. A
//! copy kept on the modem (a stored message or report) is deleted only after its
//! record committed. A report that matches no recorded part yet (its part was
//! acknowledged while the database was away) is tried again every few seconds
//! for [`UNMATCHED_GRACE`]. An event the database refuses for good (not a
//! transient error) is set aside in `<journal>.rejected` with the reason, so it
//! never holds up the others.

use super::journal::Shared;
use super::policy;
use super::steer::Steering;
use crate::modem::{Fleet, ModemEvent, StoredAt};
use crate::pdu::{self, Body, Tpdu};
use crate::store::{
    contract, Delivery, Fragment, FragmentOutcome, InboxMessage, PartRecord, ReportUpdate, Store,
    StoreError,
};
use chrono::{DateTime, Duration as CDuration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

/// How long a delivery report that matches no recorded part is kept and tried
/// again: its part may be recorded late (acknowledged while the database was
/// down, written when it returned). A report that still matches nothing is not ours.
pub const UNMATCHED_GRACE: CDuration = CDuration::minutes(3);

/// How often unmatched reports and unresolved late answers are tried again.
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// How long a late `+CMGS` that finds no message in doubt yet is kept (its
/// send's outcome may not be written yet).
const LATE_GRACE: CDuration = CDuration::seconds(30);

/// Entries of the journal held in memory at once.
const WINDOW: usize = 500;

/// Each database call gets this long before the event is journaled instead.
const DB_TIMEOUT: Duration = Duration::from_secs(10);

/// What the recorder needs from the configuration (reloaded by SIGHUP).
#[derive(Debug, Clone, PartialEq)]
pub struct InboundRules {
    pub opt_out_keywords: Vec<String>,
    pub report_timeout_hours: u32,
    pub incomplete_after_minutes: u32,
    pub log_bodies: bool,
}

impl InboundRules {
    pub fn from_config(c: &crate::config::Config) -> InboundRules {
        InboundRules {
            opt_out_keywords: c.opt_out.keywords.clone(),
            report_timeout_hours: c.sending.report_timeout_hours,
            incomplete_after_minutes: c.inbox.incomplete_after_minutes,
            log_bodies: c.log.bodies,
        }
    }
}

/// A write for something a modem reported. The modem's stored copy (if any) is
/// deleted only after the write; a routed report or message exists only here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
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
    /// A part the network acknowledged whose record failed (the database was
    /// away): the fact that message `id`'s part went, with its reference.
    Part { id: i64, part: PartRecord },
}

impl Entry {
    fn modem(&self) -> &str {
        match self {
            Entry::Report { update, .. } => &update.modem,
            Entry::Fragment { fragment, .. } => &fragment.modem,
            Entry::Inbox { message, .. } => &message.modem,
            Entry::Part { part, .. } => &part.modem,
        }
    }

    fn stored(&self) -> Option<&StoredAt> {
        match self {
            Entry::Report { stored, .. }
            | Entry::Fragment { stored, .. }
            | Entry::Inbox { stored, .. } => stored.as_ref(),
            Entry::Part { .. } => None,
        }
    }
}

/// How one attempt to record an entry went.
enum Recorded {
    Done,
    /// A report whose part is not recorded yet: kept aside and tried again.
    Unmatched,
    /// The database is away: keep it (in order) and try again later.
    Later(String),
    /// The database refuses it for good.
    Refused(String),
}

/// A late or stale `+CMGS` waiting for its message in doubt.
#[derive(Debug, Clone)]
struct Late {
    modem: String,
    mr: u8,
    /// Only a doubt that arose at or after this can be the one it answers.
    not_before: DateTime<Utc>,
    seen: DateTime<Utc>,
}

/// The recorder.
pub struct Inbound {
    store: Store,
    fleet: Fleet,
    rules: InboundRules,
    steer: Arc<Steering>,
    journal: Shared,
    /// The loaded head of the journal, oldest first.
    window: VecDeque<Entry>,
    unmatched: Vec<(Entry, DateTime<Utc>)>,
    late: Vec<Late>,
    /// When this process started: a stale answer read at open belongs to a
    /// message its predecessor left in doubt, settled since.
    started_at: DateTime<Utc>,
    /// Told of every new incoming message, after commit.
    hooks: crate::hooks::Hooks,
}

impl Inbound {
    /// Hooks to run after incoming messages are committed (`[hooks]`).
    pub fn with_hooks(mut self, hooks: crate::hooks::Hooks) -> Inbound {
        self.hooks = hooks;
        self
    }

    pub fn new(
        store: Store,
        fleet: Fleet,
        rules: InboundRules,
        steer: Arc<Steering>,
        journal: Shared,
        started_at: DateTime<Utc>,
    ) -> std::io::Result<Inbound> {
        if journal.pending() > 0 {
            info!(entries = journal.pending(), journal = %journal.path().display(), "modem events kept from before the restart; recording them");
        }
        Ok(Inbound {
            store,
            fleet,
            rules,
            steer,
            journal,
            window: VecDeque::new(),
            unmatched: Vec::new(),
            late: Vec::new(),
            started_at,
            hooks: Default::default(),
        })
    }

    /// Runs until `stop`; then records what it can once more, and leaves the
    /// rest in the journal for the next start.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<ModemEvent>,
        mut stop: watch::Receiver<bool>,
        mut rules: watch::Receiver<InboundRules>,
    ) {
        let mut retry = tokio::time::interval(RETRY_EVERY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut housekeeping = tokio::time::interval(Duration::from_secs(30));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *stop.borrow() {
                break;
            }
            self.steer.inbound_idle();
            tokio::select! {
                _ = stop.changed() => {}
                ev = events.recv() => match ev {
                    Some(ev) => {
                        self.steer.inbound_working();
                        self.on_event(ev).await
                    }
                    None => break,
                },
                _ = rules.changed() => self.rules = rules.borrow().clone(),
                _ = retry.tick() => {
                    self.steer.inbound_working();
                    self.drain().await;
                    self.retry_unmatched().await;
                    self.retry_late().await;
                }
                _ = housekeeping.tick() => {
                    self.steer.inbound_working();
                    self.housekeeping().await
                }
            }
            self.publish();
        }
        // Stopping: what the channel still holds goes through the same path
        // (recorded, or journaled for the next start).
        while let Ok(ev) = events.try_recv() {
            self.on_event(ev).await;
        }
        self.drain().await;
        if self.journal.pending() > 0 {
            warn!(
                left = self.journal.pending(),
                journal = %self.journal.path().display(),
                "stopping with modem events the database did not take; recorded at the next start"
            );
        }
    }

    fn publish(&self) {
        self.steer
            .set_unrecorded(self.journal.pending() as usize + self.unmatched.len());
    }

    async fn on_event(&mut self, ev: ModemEvent) {
        let now = Utc::now();
        let entry = match ev {
            ModemEvent::StatusReport {
                modem,
                pdu,
                raw,
                stored,
            } => match pdu.map(|d| d.tpdu) {
                Ok(Tpdu::StatusReport(sr)) => {
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
                        since: now - CDuration::hours(i64::from(self.rules.report_timeout_hours)),
                        tp_status: sr.status.raw,
                        status,
                        report_at: now,
                        discharge_at: sr.discharge_time.to_utc().unwrap_or(now),
                    };
                    metrics::counter!("smsgw_delivery_reports_total", "status" => status.as_str())
                        .increment(1);
                    info!(modem = %modem, mr = update.mr, status = %sr.status.meaning, "delivery report received");
                    Entry::Report { update, stored }
                }
                _ => {
                    warn!(modem = %modem, raw = %raw.escape_debug(), "undecodable status report dropped");
                    self.delete(&modem, stored.as_ref());
                    return;
                }
            },
            ModemEvent::Incoming {
                modem,
                pdu,
                raw,
                stored,
            } => match self.incoming(&modem, pdu, &raw, stored.clone()) {
                Some(e) => e,
                None => {
                    self.delete(&modem, stored.as_ref());
                    return;
                }
            },
            ModemEvent::LateSubmit { modem, mr } => {
                return self
                    .late_answer(Late {
                        modem,
                        mr,
                        not_before: now - CDuration::minutes(10),
                        seen: now,
                    })
                    .await
            }
            ModemEvent::Call {
                modem,
                caller,
                at,
                hung_up,
            } => {
                let call = crate::store::Call {
                    modem,
                    caller,
                    received_at: at,
                    hung_up,
                };
                // Once: a call is a fact worth a line, not worth holding up the
                // reports behind it while the database is away.
                if let Err(e) = self.store.insert_call(&call).await {
                    warn!(modem = %call.modem, error = %e, "an incoming call cannot be recorded");
                }
                return;
            }
            ModemEvent::StaleSubmit { modem, mr } => {
                return self
                    .late_answer(Late {
                        modem,
                        mr,
                        not_before: self.started_at - CDuration::minutes(1),
                        seen: now,
                    })
                    .await
            }
        };
        if self.journal.pending() > 0 {
            // Behind others that wait: keep the order.
            return self.spill(entry);
        }
        crate::failpoint::hit("before_record");
        match self.record(&entry).await {
            Recorded::Done => {
                crate::failpoint::hit("after_record_before_delete");
                self.delete(entry.modem(), entry.stored())
            }
            Recorded::Unmatched => self.unmatched.push((entry, now)),
            Recorded::Later(why) => {
                warn!(error = %why, "cannot record a modem event yet; journaled and retried");
                self.spill(entry);
            }
            Recorded::Refused(why) => self.set_aside(&entry, &why),
        }
    }

    /// Appends to the journal (synced); on a failing disk it is kept in memory.
    fn spill(&mut self, e: Entry) {
        if let Err(err) = self.journal.append(&e) {
            error!(error = %err, journal = %self.journal.path().display(), "cannot write the journal; keeping the event in memory only");
            self.window.push_back(e);
        }
    }

    /// Records the journal's entries in order until the database refuses one.
    /// Run once at start, before the predecessor's rows are settled: a part it
    /// journaled is then recorded, not taken for one in doubt.
    pub async fn drain(&mut self) {
        loop {
            if self.window.is_empty() {
                match self.journal.load::<Entry>(WINDOW) {
                    Ok(v) => self.window.extend(v),
                    Err(e) => {
                        error!(error = %e, "cannot read the journal");
                        return;
                    }
                }
            }
            let Some(e) = self.window.front().cloned() else {
                return;
            };
            match self.record(&e).await {
                Recorded::Done => {
                    crate::failpoint::hit("after_record_before_delete");
                    self.delete(e.modem(), e.stored())
                }
                Recorded::Unmatched => self.unmatched.push((e, Utc::now())),
                Recorded::Later(_) => return,
                Recorded::Refused(why) => self.set_aside(&e, &why),
            }
            self.window.pop_front();
            if let Err(err) = self.journal.confirm() {
                error!(error = %err, "cannot update the journal");
            }
            self.steer.inbound_working();
        }
    }

    /// A record the database refuses for good: set aside with the reason.
    fn set_aside(&self, e: &Entry, why: &str) {
        error!(error = %why, "the database refuses a modem event; set aside in the rejected file");
        let path = self.journal.path().with_extension("rejected");
        let line = serde_json::json!({ "error": why, "entry": e }).to_string();
        // Synced (and a new file's name with its directory): the entry is
        // confirmed out of the journal right after this.
        let r = crate::durable::open_creating(
            &path,
            std::fs::OpenOptions::new().create(true).append(true),
        )
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes())?;
            f.sync_data()
        });
        if let Err(err) = r {
            error!(error = %err, file = %path.display(), "cannot write the rejected file");
        }
    }

    async fn retry_unmatched(&mut self) {
        let now = Utc::now();
        for (e, first) in std::mem::take(&mut self.unmatched) {
            match self.record(&e).await {
                Recorded::Done => self.delete(e.modem(), e.stored()),
                Recorded::Unmatched if now - first < UNMATCHED_GRACE => {
                    self.unmatched.push((e, first))
                }
                Recorded::Unmatched => {
                    if let Entry::Report { update, stored } = &e {
                        warn!(modem = %update.modem, mr = update.mr, "delivery report matches no sent part");
                        self.delete(&update.modem, stored.as_ref());
                    }
                }
                Recorded::Later(_) => self.unmatched.push((e, first)),
                Recorded::Refused(why) => self.set_aside(&e, &why),
            }
        }
    }

    /// One write, within [`DB_TIMEOUT`].
    async fn record(&self, e: &Entry) -> Recorded {
        match tokio::time::timeout(DB_TIMEOUT, self.record_once(e)).await {
            Ok(Ok(r)) => r,
            Ok(Err(err)) if err.is_transient() => Recorded::Later(err.to_string()),
            Ok(Err(err)) => Recorded::Refused(err.to_string()),
            Err(_) => Recorded::Later("the database did not answer in time".into()),
        }
    }

    async fn record_once(&self, e: &Entry) -> Result<Recorded, StoreError> {
        Ok(match e {
            // `report_at` is when it is recorded, now: a report recorded late
            // (parked unmatched, journaled through an outage) comes after the
            // ones recorded before it for whoever reads them in that order.
            Entry::Report { update, .. } => match self
                .store
                .apply_report(&ReportUpdate {
                    report_at: Utc::now(),
                    ..update.clone()
                })
                .await?
            {
                Some(id) => {
                    info!(id, modem = %update.modem, mr = update.mr, status = update.status.as_str(), "delivery report recorded");
                    Recorded::Done
                }
                // Kept and tried again for a while (its part may be recorded
                // later, even from the journal after an outage).
                None => {
                    debug!(modem = %update.modem, mr = update.mr, "delivery report matches no recorded part yet; kept");
                    Recorded::Unmatched
                }
            },
            Entry::Part { id, part } => {
                self.store.record_part(*id, part).await?;
                info!(
                    id,
                    part = part.seq,
                    "an acknowledged part kept in the journal is recorded"
                );
                Recorded::Done
            }
            Entry::Fragment { fragment, .. } => {
                let keywords = self.rules.opt_out_keywords.clone();
                let join = move |all: &[Fragment]| joined(all, &keywords);
                match self.store.add_fragment(fragment, join).await? {
                    FragmentOutcome::Waiting | FragmentOutcome::AlreadyStored => {}
                    FragmentOutcome::Stored { message, new } => self.stored(&message, new),
                }
                Recorded::Done
            }
            Entry::Inbox { message, .. } => {
                let new = self.store.insert_inbox(message).await?;
                self.stored(message, new);
                Recorded::Done
            }
        })
    }

    fn stored(&self, m: &InboxMessage, new: bool) {
        if !new {
            return;
        }
        self.hooks.emit(crate::hooks::Event::Received(m.clone()));
        info!(modem = %m.modem, from = %m.sender, parts = m.parts, opt_out = m.opt_out, "incoming message");
        if self.rules.log_bodies {
            debug!(modem = %m.modem, from = %m.sender, body = %m.body, "incoming body");
        }
        if m.opt_out {
            info!(recipient = %m.sender, "opted out");
        }
        metrics::counter!("smsgw_incoming_messages_total", "modem" => m.modem.clone()).increment(1);
    }

    /// Deletes a stored copy once its record committed (in the background: the
    /// modem answers when its current send is over).
    fn delete(&self, modem: &str, at: Option<&StoredAt>) {
        let (Some(at), Some(h)) = (at.cloned(), self.fleet.get(modem)) else {
            return;
        };
        let modem = modem.to_string();
        tokio::spawn(async move {
            if let Err(e) = h.delete(at).await {
                warn!(modem, error = %e, "could not delete a stored message (it will be read again, and deduplicated)");
            }
        });
    }

    /// What an incoming PDU asks to be written: a fragment to keep until the rest
    /// arrives, or a whole message for the inbox (None: nothing; delete it).
    fn incoming(
        &self,
        modem: &str,
        pdu: Result<pdu::Decoded, String>,
        raw: &str,
        stored: Option<StoredAt>,
    ) -> Option<Entry> {
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
            None => Entry::Inbox {
                message: message(
                    modem,
                    sender,
                    body,
                    received_at,
                    &self.rules.opt_out_keywords,
                ),
                stored,
            },
            Some(c) => Entry::Fragment {
                fragment: Fragment {
                    modem: modem.to_string(),
                    sender,
                    concat_ref: i32::from(c.reference),
                    total: i32::from(c.total),
                    seq: i32::from(c.seq),
                    body,
                    received_at,
                },
                stored,
            },
        })
    }

    /// A `+CMGS` that arrived after its send gave up (late), or that a previous
    /// process's send left in the port (stale): the part in doubt on that modem
    /// was sent after all.
    async fn late_answer(&mut self, l: Late) {
        if !self.resolve(&l).await {
            self.late.push(l);
        }
    }

    async fn retry_late(&mut self) {
        let now = Utc::now();
        for l in std::mem::take(&mut self.late) {
            if !self.resolve(&l).await {
                if now - l.seen < LATE_GRACE {
                    self.late.push(l);
                } else {
                    warn!(modem = %l.modem, mr = l.mr, "+CMGS for no message in doubt; ignored");
                }
            }
        }
    }

    /// Records the part in doubt with its reference; the message is then `sent`
    /// if every part is recorded, or queued for the parts never attempted. True
    /// when done with (resolved, or certainly not resolvable).
    async fn resolve(&self, l: &Late) -> bool {
        let now = Utc::now();
        let doubts = match self.store.doubts_on(&l.modem).await {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "cannot look up messages in doubt yet");
                return false;
            }
        };
        let Some(d) = doubts.into_iter().find(|d| d.since >= l.not_before) else {
            return false;
        };
        let id = d.id;
        let rec = PartRecord {
            seq: d.seq,
            total: d.parts_total,
            modem: l.modem.clone(),
            recipient: contract::normalise_recipient(&d.recipient),
            mr: Some(l.mr),
            submitted_at: now,
            status: Delivery::initial(d.request_report),
        };
        let outcome = async {
            self.store.record_part(id, &rec).await?;
            let recorded = self.store.parts(id).await?.len() as i32;
            if recorded >= d.parts_total {
                let delivery = Delivery::initial(d.request_report);
                self.store
                    .resolve_sent(id, &l.modem, d.parts_total, delivery, now)
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
                info!(id, modem = %l.modem, mr = l.mr, part = d.seq, outcome = what, "late +CMGS resolved an ambiguous message");
                self.steer.wake();
                true
            }
            Err(e) => {
                warn!(id, modem = %l.modem, mr = l.mr, error = %e, "late +CMGS not recorded yet");
                false
            }
        }
    }

    /// Incoming messages whose missing parts never came, and the memory of
    /// reassembled parts older than a week.
    async fn housekeeping(&mut self) {
        let wait = CDuration::minutes(i64::from(self.rules.incomplete_after_minutes));
        let groups = match self.store.stale_fragments(Utc::now() - wait).await {
            Ok(g) => g,
            Err(e) => return warn!(error = %e, "cannot look for incomplete incoming messages"),
        };
        for g in groups {
            let m = joined(&g.fragments, &self.rules.opt_out_keywords);
            match self.store.store_incomplete(&g, &m).await {
                Ok(new) => {
                    warn!(
                        modem = %m.modem, from = %m.sender, parts = m.parts, missing = m.missing_parts,
                        "incoming message stored incomplete: the network did not deliver its other parts"
                    );
                    self.stored(&m, new);
                }
                Err(e) => {
                    warn!(error = %e, "cannot store an incomplete incoming message yet; tried again later")
                }
            }
        }
        if let Err(e) = self
            .store
            .forget_done_fragments(Utc::now() - CDuration::days(7))
            .await
        {
            debug!(error = %e, "cannot forget old reassembled parts yet");
        }
    }
}

fn message(
    modem: &str,
    sender: String,
    body: String,
    received_at: DateTime<Utc>,
    keywords: &[String],
) -> InboxMessage {
    InboxMessage {
        modem: modem.to_string(),
        opt_out: policy::is_opt_out(&body, keywords),
        sender,
        body,
        parts: 1,
        missing_parts: 0,
        received_at,
    }
}

/// The message made of the parts of one concatenated message (all of them, or
/// those that arrived). Received when its first part was.
pub fn joined(fragments: &[Fragment], keywords: &[String]) -> InboxMessage {
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
        ..message(
            &first.modem,
            first.sender.clone(),
            body,
            received_at,
            keywords,
        )
    }
}
