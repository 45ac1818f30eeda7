//! The store's domain, without SQL: what a row's states mean and who moves them,
//! what each outcome writes, how part deliveries roll up to a message, how the
//! parts of an incoming message join. Policy, the dispatcher and the status
//! socket import these; the backends only read and write them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The lifecycle of an outbox row. Each state says which component moves a row out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Inserted by another system (the default). Left by a claim (-> `sending`), or by
    /// an operator (`cancelled`).
    Queued,
    /// Claimed by one smsgw instance under a lease. Left when that instance completes it,
    /// when it settles its predecessor's rows after a restart, or by the rescuer when
    /// the lease expires (-> `retrying`, `sent` when every part was recorded, or
    /// `ambiguous` if a part was on the wire).
    Sending,
    /// A temporary failure; claimable again at `due_at`.
    Retrying,
    /// Every part accepted by the network (`delivery` follows separately). Final.
    Sent,
    /// A permanent failure, or attempts exhausted. Final.
    Failed,
    /// `expires_at` passed before it could be sent. Final.
    Expired,
    /// Cancelled by an operator or the inserting system. Final.
    Cancelled,
    /// The row is invalid (recipient, body, size, times); `last_error` says why. Final.
    Rejected,
    /// Not sent by policy (the recipient opted out). Final.
    Suppressed,
    /// A part may have reached the network without confirmation. Waits for an
    /// operator or the configured policy (release to resend the unconfirmed parts,
    /// or fail), or for the modem's late `+CMGS` (then `sent`).
    Ambiguous,
}

impl State {
    pub const ALL: [State; 10] = [
        State::Queued,
        State::Sending,
        State::Retrying,
        State::Sent,
        State::Failed,
        State::Expired,
        State::Cancelled,
        State::Rejected,
        State::Suppressed,
        State::Ambiguous,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Sending => "sending",
            State::Retrying => "retrying",
            State::Sent => "sent",
            State::Failed => "failed",
            State::Expired => "expired",
            State::Cancelled => "cancelled",
            State::Rejected => "rejected",
            State::Suppressed => "suppressed",
            State::Ambiguous => "ambiguous",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// No component moves the row on by itself (an operator still may).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            State::Queued | State::Sending | State::Retrying | State::Ambiguous
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for State {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for State {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// Delivery, separate from the lifecycle: what the status reports said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// No report requested, or not sent.
    None,
    /// Sent with a report requested; waiting.
    Pending,
    Delivered,
    Failed,
    /// Reports did not arrive in time.
    Unknown,
}

impl Delivery {
    /// A sent part's or message's delivery before any report: `pending` when a
    /// report was requested, else `none`.
    pub fn initial(report_requested: bool) -> Delivery {
        if report_requested {
            Delivery::Pending
        } else {
            Delivery::None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::None => "none",
            Delivery::Pending => "pending",
            Delivery::Delivered => "delivered",
            Delivery::Failed => "failed",
            Delivery::Unknown => "unknown",
        }
    }

    /// Reads a delivery status column (an unknown value reads as `unknown`).
    pub fn parse(s: &str) -> Delivery {
        match s {
            "none" => Delivery::None,
            "pending" => Delivery::Pending,
            "delivered" => Delivery::Delivered,
            "failed" => Delivery::Failed,
            _ => Delivery::Unknown,
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Delivery {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for Delivery {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// A message to queue (the `smsgw enqueue` command and tests; other systems INSERT directly).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMessage {
    pub recipient: Option<String>,
    pub body: Option<String>,
    pub category: Option<String>,
    pub priority: i32,
    pub send_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub dedupe_key: Option<String>,
    pub modem_group: Option<String>,
    pub request_report: bool,
    pub flash: bool,
    pub external_ref: Option<String>,
}

impl NewMessage {
    pub fn new(recipient: &str, body: &str) -> NewMessage {
        NewMessage {
            recipient: Some(recipient.into()),
            body: Some(body.into()),
            request_report: true,
            ..Default::default()
        }
    }
}

/// The result of queueing a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: i64,
    /// The dedupe key was already used: no new row, `id` is the existing one.
    pub duplicate: bool,
}

/// A claimed row: what the dispatcher needs to validate, route and send it.
/// Every column is decoded on its own; a row with a value smsgw cannot read
/// still comes back, with `unreadable` saying which and why (it is then
/// rejected by its id, never its batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claimed {
    pub id: i64,
    pub recipient: Option<String>,
    pub body: Option<String>,
    pub category: String,
    pub priority: i32,
    pub send_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub modem_group: Option<String>,
    pub request_report: bool,
    pub flash: bool,
    pub attempts: i32,
    pub due_at: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
    /// Sequence numbers of parts already accepted by the network (never resend them).
    pub parts_done: Vec<i32>,
    /// Why a column of this row could not be read (the row is rejected with it).
    pub unreadable: Option<String>,
}

/// A part the network accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub seq: i32,
    pub total: i32,
    pub modem: String,
    pub recipient: String,
    pub mr: Option<u8>,
    pub submitted_at: DateTime<Utc>,
    /// `pending` when a report was requested, else `none`.
    pub status: Delivery,
}

/// An incoming call (`calls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub modem: String,
    /// From `+CLIP`; `None` when withheld or unknown.
    pub caller: Option<String>,
    pub received_at: DateTime<Utc>,
    pub hung_up: bool,
}

/// A recorded part with what its delivery report said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartReport {
    pub part: PartRecord,
    /// When the report was recorded.
    pub report_at: Option<DateTime<Utc>>,
    /// The report's TP-Status.
    pub tp_status: Option<i32>,
}

/// Where a reader of recorded reports has got to: the report time, then the
/// part id among reports recorded at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportCursor {
    pub at: DateTime<Utc>,
    pub part_id: i64,
}

impl Default for ReportCursor {
    fn default() -> Self {
        ReportCursor {
            at: DateTime::<Utc>::UNIX_EPOCH,
            part_id: 0,
        }
    }
}

/// A report as recorded on a part, with the row's dedupe key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedReport {
    pub cursor: ReportCursor,
    pub dedupe_key: Option<String>,
    pub report: PartReport,
}

/// How a claimed row ends (or goes back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    Sent {
        modem: String,
        parts_total: i32,
        report_requested: bool,
    },
    /// A temporary failure: claimable again at `due`; `count_attempt` false for
    /// failures that were not this message's fault (modem problems).
    Retry {
        error: String,
        due: DateTime<Utc>,
        count_attempt: bool,
    },
    Failed {
        error: String,
    },
    /// A part may have reached the network. The row keeps its in-flight marker
    /// (the part in doubt, on its modem), so a late `+CMGS` can still resolve it.
    Ambiguous {
        error: String,
    },
    Rejected {
        error: String,
    },
    Expired,
    Suppressed {
        reason: String,
    },
    /// Back to the queue unharmed (quiet hours, no modem capacity), due at `due`.
    Release {
        due: DateTime<Utc>,
    },
}

/// The columns a [`Completion`] writes: shared by every backend, so the
/// lifecycle is defined once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub state: State,
    pub error: Option<String>,
    pub attempt_increment: i32,
    pub due: Option<DateTime<Utc>>,
    pub sent: bool,
    pub modem: Option<String>,
    pub parts_total: Option<i32>,
    pub delivery: Option<Delivery>,
    /// Keep the in-flight marker (the part in doubt) instead of clearing it.
    pub keep_inflight: bool,
}

impl Completion {
    pub fn transition(&self) -> Transition {
        let base = |state| Transition {
            state,
            error: None,
            attempt_increment: 0,
            due: None,
            sent: false,
            modem: None,
            parts_total: None,
            delivery: None,
            keep_inflight: false,
        };
        match self {
            Completion::Sent {
                modem,
                parts_total,
                report_requested,
            } => Transition {
                attempt_increment: 1,
                sent: true,
                modem: Some(modem.clone()),
                parts_total: Some(*parts_total),
                delivery: Some(Delivery::initial(*report_requested)),
                ..base(State::Sent)
            },
            Completion::Retry {
                error,
                due,
                count_attempt,
            } => Transition {
                error: Some(error.clone()),
                attempt_increment: i32::from(*count_attempt),
                due: Some(*due),
                ..base(State::Retrying)
            },
            Completion::Failed { error } => Transition {
                error: Some(error.clone()),
                attempt_increment: 1,
                ..base(State::Failed)
            },
            Completion::Ambiguous { error } => Transition {
                error: Some(error.clone()),
                attempt_increment: 1,
                keep_inflight: true,
                ..base(State::Ambiguous)
            },
            Completion::Rejected { error } => Transition {
                error: Some(error.clone()),
                ..base(State::Rejected)
            },
            Completion::Expired => Transition {
                error: Some("expired before it could be sent".into()),
                ..base(State::Expired)
            },
            Completion::Suppressed { reason } => Transition {
                error: Some(reason.clone()),
                ..base(State::Suppressed)
            },
            Completion::Release { due } => Transition {
                due: Some(*due),
                ..base(State::Queued)
            },
        }
    }
}

/// An outbox row as a caller reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRow {
    pub id: i64,
    pub recipient: Option<String>,
    pub category: String,
    pub priority: i32,
    pub state: State,
    pub delivery: Delivery,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub modem: Option<String>,
    pub parts_total: Option<i32>,
    pub sent_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub external_ref: Option<String>,
}

/// What an operator may do to one message (the status socket's control requests).
/// Each action moves a row only out of the states listed by [`OperatorAction::from`]:
/// a message being sent, or already final, is never touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorAction {
    /// One more attempt now, for a failed, expired, cancelled or ambiguous message
    /// (parts the network acknowledged are not sent again).
    Retry,
    /// Never send a message that is still waiting (queued, retrying, ambiguous).
    Cancel,
    /// An ambiguous message: send the unconfirmed parts again.
    ReleaseResend,
    /// An ambiguous message: give up on it (`failed`).
    ReleaseFail,
}

impl OperatorAction {
    /// The states the action applies to (padded to four for one fixed statement).
    pub fn from(self) -> [State; 4] {
        use State::*;
        match self {
            OperatorAction::Retry => [Failed, Expired, Cancelled, Ambiguous],
            OperatorAction::Cancel => [Queued, Retrying, Ambiguous, Ambiguous],
            OperatorAction::ReleaseResend | OperatorAction::ReleaseFail => [Ambiguous; 4],
        }
    }

    pub fn to(self) -> State {
        match self {
            OperatorAction::Retry | OperatorAction::ReleaseResend => State::Retrying,
            OperatorAction::Cancel => State::Cancelled,
            OperatorAction::ReleaseFail => State::Failed,
        }
    }

    /// Written to `last_error` when the action leaves the row final, so the row says who closed it.
    pub fn note(self) -> Option<&'static str> {
        match self {
            OperatorAction::Cancel => Some("cancelled by an operator"),
            OperatorAction::ReleaseFail => Some("ambiguous send marked failed by an operator"),
            _ => None,
        }
    }
}

/// Recent activity, for the queue view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub sent_last_hour: i64,
    pub delivered_last_hour: i64,
    /// The message that has waited longest among those due now: id and due time.
    pub oldest_due: Option<(i64, DateTime<Utc>)>,
}

/// An incoming message, reassembled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxMessage {
    pub modem: String,
    pub sender: String,
    pub body: String,
    /// Parts the message announced.
    pub parts: i32,
    /// Of those, how many never arrived (see [`join_fragments`]); 0 for a whole message.
    pub missing_parts: i32,
    pub received_at: DateTime<Utc>,
    pub opt_out: bool,
}

/// FNV-1a over fields, each ended by 0xFF: stable across versions and platforms.
fn fnv(fields: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for field in fields {
        for b in field.bytes().chain([0xFF]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl InboxMessage {
    /// Identifies the same message read twice (a restart before its deletion).
    pub fn fingerprint(&self) -> String {
        let h = fnv(&[
            &self.modem,
            &self.sender,
            &self.received_at.to_rfc3339(),
            &self.body,
        ]);
        format!("{h:016x}-{}", self.body.chars().count())
    }
}

/// One part of a concatenated incoming message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fragment {
    pub modem: String,
    pub sender: String,
    pub concat_ref: i32,
    pub total: i32,
    pub seq: i32,
    pub body: String,
    pub received_at: DateTime<Utc>,
}

impl Fragment {
    /// Identifies this very part (the network's timestamp included): a fragment
    /// of a message already in the inbox, read again after a crash, is known by it
    /// and ignored; a new message reusing the same 8-bit reference is not.
    pub fn fingerprint(&self) -> String {
        let h = fnv(&[
            &self.modem,
            &self.sender,
            &self.concat_ref.to_string(),
            &self.total.to_string(),
            &self.seq.to_string(),
            // Whole seconds: the network's timestamp has no more, and the
            // backends keep different fractions.
            &self.received_at.timestamp().to_string(),
            &self.body,
        ]);
        format!("{h:016x}")
    }
}

/// The parts of one incoming message that have waited too long for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleFragments {
    /// Their rows in `inbox_fragments`, to delete once the message is stored.
    pub ids: Vec<i64>,
    /// In part order.
    pub fragments: Vec<Fragment>,
}

/// The marker written where a part of an incoming message is missing.
pub const MISSING_PART: &str = "[…]";

/// The text of a concatenated message from its parts (in any order, repeats
/// ignored), with [`MISSING_PART`] for each part of `1..=total` that never arrived;
/// and how many are missing.
pub fn join_fragments(total: i32, fragments: &[Fragment]) -> (String, i32) {
    let mut body = String::new();
    let mut missing = 0;
    for seq in 1..=total.max(1) {
        match fragments.iter().find(|f| f.seq == seq) {
            Some(f) => body.push_str(&f.body),
            None => {
                body.push_str(MISSING_PART);
                missing += 1;
            }
        }
    }
    (body, missing)
}

/// A delivery report to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportUpdate {
    pub modem: String,
    pub mr: u8,
    pub recipient: String,
    /// Only parts submitted after this are candidates (the matching window).
    pub since: DateTime<Utc>,
    pub tp_status: u8,
    /// `pending` for "still trying", `delivered` or `failed` when final.
    pub status: Delivery,
    pub report_at: DateTime<Utc>,
    pub discharge_at: DateTime<Utc>,
}

/// A message's delivery from its recorded parts (status, parts announced):
/// `failed` when any part failed, `delivered` only when every part of the message
/// is recorded and delivered (part 1 delivered while part 2 waits to be sent is
/// still `pending`), else `pending`.
///
/// A `sent` completion never turns a `delivered` or `failed` row back to `pending`
/// (the SQL guards it): a report can be handled before the completion is written,
/// when the part was recorded as the modem acknowledged it.
pub fn roll_up(parts: &[(Delivery, i32)]) -> Delivery {
    let total = parts.iter().map(|(_, t)| *t).max().unwrap_or(1).max(1);
    if parts.iter().any(|(s, _)| *s == Delivery::Failed) {
        Delivery::Failed
    } else if parts.len() >= total as usize && parts.iter().all(|(s, _)| *s == Delivery::Delivered)
    {
        Delivery::Delivered
    } else {
        Delivery::Pending
    }
}

/// A `sending` row whose holder is gone (a restarted instance's predecessor, or
/// an expired lease), as settling sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsettled {
    pub id: i64,
    pub lease_owner: String,
    pub lease_until: DateTime<Utc>,
    /// The part that was (or was about to be) on the wire.
    pub inflight_part: Option<i32>,
    /// Parts of the message, written at hand-over.
    pub parts_total: Option<i32>,
    /// The modem it was handed to.
    pub modem: Option<String>,
    pub request_report: bool,
    /// Parts recorded as acknowledged by the network.
    pub recorded: Vec<i32>,
}

/// What settling does with an [`Unsettled`] row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Nothing was on the wire: claimable again at once, no attempt used.
    Requeue { reason: String },
    /// Every part was recorded before the holder died: `sent`.
    Sent {
        modem: String,
        parts_total: i32,
        delivery: Delivery,
    },
    /// The part on the wire may have reached the network: `ambiguous`, keeping
    /// the marker (part and modem) for a late `+CMGS`.
    Ambiguous { reason: String },
}

/// Decides, without I/O, how a row its holder left behind is settled. Parts go
/// out one at a time, and the marker moves to the next part in the same write
/// that records the previous one: so at most the marked part is in doubt.
pub fn settle(row: &Unsettled, why: &str) -> Settle {
    let Some(part) = row.inflight_part else {
        return Settle::Requeue {
            reason: format!("{why} before handing it to a modem; queued again"),
        };
    };
    if !row.recorded.contains(&part) {
        let on = row
            .modem
            .as_deref()
            .map(|m| format!(" on modem {m}"))
            .unwrap_or_default();
        return Settle::Ambiguous {
            reason: format!(
                "{why} while part {part}{on} was being sent: it may have reached the network"
            ),
        };
    }
    match (row.parts_total, &row.modem) {
        (Some(total), Some(modem)) if (1..=total).all(|s| row.recorded.contains(&s)) => {
            Settle::Sent {
                modem: modem.clone(),
                parts_total: total,
                delivery: Delivery::initial(row.request_report),
            }
        }
        // Defensive: the marked part is recorded but others are not (a marker
        // written by an older smsgw): the unrecorded ones were never attempted.
        _ => Settle::Requeue {
            reason: format!("{why} between parts; the parts not sent yet are queued again"),
        },
    }
}

/// What settling did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rescued {
    /// Returned to `retrying` (nothing was on the wire).
    pub retrying: u64,
    /// Held as `ambiguous` (a part was on the wire when the holder vanished).
    pub ambiguous: u64,
    /// Every part had been recorded: `sent`.
    pub sent: u64,
}

/// An ambiguous message whose part in doubt a late `+CMGS` on `modem` can resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doubt {
    pub id: i64,
    pub seq: i32,
    pub parts_total: i32,
    pub recipient: String,
    pub request_report: bool,
    /// When the row became ambiguous.
    pub since: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("bogus"), None);
        assert!(State::Sent == "sent");
    }

    #[test]
    fn transitions() {
        let t = Completion::Retry {
            error: "x".into(),
            due: Utc::now(),
            count_attempt: false,
        }
        .transition();
        assert_eq!((t.state, t.attempt_increment), (State::Retrying, 0));
        let t = Completion::Sent {
            modem: "m1".into(),
            parts_total: 2,
            report_requested: true,
        }
        .transition();
        assert_eq!(
            (t.state, t.delivery, t.sent),
            (State::Sent, Some(Delivery::Pending), true)
        );
        assert_eq!(
            Completion::Release { due: Utc::now() }.transition().state,
            State::Queued
        );
        assert!(
            Completion::Ambiguous { error: "x".into() }
                .transition()
                .keep_inflight
        );
    }

    #[test]
    fn fragments_join_in_order_with_missing_parts_marked() {
        let f = |seq: i32, body: &str| Fragment {
            modem: "m1".into(),
            sender: "10086".into(),
            concat_ref: 7,
            total: 4,
            seq,
            body: body.into(),
            received_at: Utc::now(),
        };
        let all = [f(2, "二"), f(1, "一"), f(4, "四"), f(3, "三")];
        assert_eq!(join_fragments(4, &all), ("一二三四".into(), 0));
        let some = [f(4, "四"), f(1, "一"), f(1, "一")];
        assert_eq!(join_fragments(4, &some), ("一[…][…]四".into(), 2));
        assert_eq!(join_fragments(2, &[]), ("[…][…]".into(), 2));
        assert_ne!(f(1, "一").fingerprint(), f(2, "一").fingerprint());
    }

    #[test]
    fn delivery_rolls_up_over_every_part_of_the_message() {
        use Delivery::*;
        assert_eq!(roll_up(&[(Delivered, 1)]), Delivered);
        assert_eq!(
            roll_up(&[(Delivered, 2)]),
            Pending,
            "part 2 not even sent yet"
        );
        assert_eq!(roll_up(&[(Delivered, 2), (Delivered, 2)]), Delivered);
        assert_eq!(roll_up(&[(Delivered, 2), (Pending, 2)]), Pending);
        assert_eq!(roll_up(&[(Pending, 3), (Failed, 3)]), Failed);
        assert_eq!(roll_up(&[]), Pending);
    }

    fn unsettled(inflight: Option<i32>, total: i32, recorded: &[i32]) -> Unsettled {
        Unsettled {
            id: 1,
            lease_owner: "a".into(),
            lease_until: Utc::now(),
            inflight_part: inflight,
            parts_total: Some(total),
            modem: Some("m1".into()),
            request_report: true,
            recorded: recorded.to_vec(),
        }
    }

    #[test]
    fn settling_holds_only_the_part_on_the_wire() {
        let why = "smsgw restarted";
        assert!(matches!(
            settle(&unsettled(None, 2, &[]), why),
            Settle::Requeue { .. }
        ));
        match settle(&unsettled(Some(2), 3, &[1]), why) {
            Settle::Ambiguous { reason } => {
                assert!(reason.contains("part 2 on modem m1"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            settle(&unsettled(Some(2), 2, &[1, 2]), why),
            Settle::Sent {
                modem: "m1".into(),
                parts_total: 2,
                delivery: Delivery::Pending
            },
            "killed after the last part was recorded, before the completion"
        );
        assert!(matches!(
            settle(&unsettled(Some(1), 3, &[1]), why),
            Settle::Requeue { .. }
        ));
    }
}
