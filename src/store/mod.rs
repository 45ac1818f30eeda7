//! The store: the outbox (smsgw's public API: other systems INSERT rows and read
//! the outcome back), the parts sent per message, the inbox and the opt-out list,
//! on SQLite (embedded default), PostgreSQL or MySQL/MariaDB.
//!
//! One [`Store`] with a module per backend, each with its own SQL and migrations
//! (`migrations/<backend>/`, embedded in the binary): `sqlx::Any` cannot read
//! timestamps nor translate placeholders. Shared, pure logic lives here: the
//! lifecycle ([`State`]), what each [`Completion`] writes ([`Transition`]), and the
//! validation of rows written by other systems ([`contract`]).
//!
//! Claims take a lease: a claimed row is `sending`, held by one owner until a time.
//! Every later write to it is guarded by "still `sending` and held by me", so a late
//! or restarted worker cannot overwrite a row that was rescued and reclaimed.
//! Parts acknowledged by the network are recorded unguarded: they are facts, and
//! they must never be sent again.

pub mod contract;
mod mysql;
mod postgres;
mod sqlite;

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

/// The lifecycle of an outbox row. Each state says which component moves a row out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Inserted by another system (the default). Left by a claim (-> `sending`), or by
    /// an operator (`cancelled`).
    Queued,
    /// Claimed by one smsgw instance under a lease. Left when that instance completes it,
    /// or by the rescuer when the lease expires (-> `retrying`, or `ambiguous` if a part
    /// was on the wire).
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
    /// operator or the configured policy (release to resend the unconfirmed parts, or fail).
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
}

/// Delivery, separate from the lifecycle: what the status reports said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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
}

/// Row decoding shared by the backends that read timestamps natively
/// (PostgreSQL, MySQL); SQLite keeps times as text and decodes its own.
pub(crate) mod native {
    use super::{delivery_from, Fragment, OutboxRow, PartRecord, Result};
    use chrono::{DateTime, Utc};
    use sqlx::{ColumnIndex, Decode, Row, Type};

    pub fn outbox_row<R>(r: &R) -> Result<OutboxRow>
    where
        R: Row,
        for<'a> &'a str: ColumnIndex<R>,
        for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(OutboxRow {
            id: r.try_get("id")?,
            recipient: r.try_get("recipient")?,
            category: r.try_get("category")?,
            priority: r.try_get("priority")?,
            state: r.try_get("state")?,
            delivery: r.try_get("delivery")?,
            attempts: r.try_get("attempts")?,
            last_error: r.try_get("last_error")?,
            modem: r.try_get("modem")?,
            parts_total: r.try_get("parts_total")?,
            sent_at: r.try_get("sent_at")?,
            lease_owner: r.try_get("lease_owner")?,
            external_ref: r.try_get("external_ref")?,
        })
    }

    pub fn part_record<R>(r: &R) -> Result<PartRecord>
    where
        R: Row,
        for<'a> &'a str: ColumnIndex<R>,
        for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(PartRecord {
            seq: r.try_get("seq")?,
            total: r.try_get("total")?,
            modem: r.try_get("modem")?,
            recipient: r.try_get("recipient")?,
            mr: r.try_get::<Option<i32>, _>("mr")?.map(|m| m as u8),
            submitted_at: r.try_get("submitted_at")?,
            status: delivery_from(&r.try_get::<String, _>("status")?),
        })
    }

    /// A row of `inbox_fragments` with its id.
    pub fn fragment<R>(r: &R) -> Result<(i64, Fragment)>
    where
        R: Row,
        for<'a> &'a str: ColumnIndex<R>,
        for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
        for<'r> DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok((
            r.try_get("id")?,
            Fragment {
                modem: r.try_get("modem")?,
                sender: r.try_get("sender")?,
                concat_ref: r.try_get("concat_ref")?,
                total: r.try_get("total")?,
                seq: r.try_get("seq")?,
                body: r.try_get("body")?,
                received_at: r.try_get("received_at")?,
            },
        ))
    }
}

/// Reads a delivery status column (unknown values read as `unknown`).
pub(crate) fn delivery_from(s: &str) -> Delivery {
    match s {
        "none" => Delivery::None,
        "pending" => Delivery::Pending,
        "delivered" => Delivery::Delivered,
        "failed" => Delivery::Failed,
        _ => Delivery::Unknown,
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

/// The result of [`Store::enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: i64,
    /// The dedupe key was already used: no new row, `id` is the existing one.
    pub duplicate: bool,
}

/// A claimed row: what the dispatcher needs to validate, route and send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claimed {
    pub id: i64,
    pub recipient: Option<String>,
    pub body: Option<String>,
    pub category: String,
    pub priority: i32,
    /// As written; for SQLite, text that may not parse (then the row is rejected).
    pub send_at: Option<String>,
    pub expires_at: Option<String>,
    pub modem_group: Option<String>,
    pub request_report: bool,
    pub flash: bool,
    pub attempts: i32,
    pub due_at: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
    /// Sequence numbers of parts already accepted by the network (never resend them).
    pub parts_done: Vec<i32>,
}

/// A part the network accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OutboxRow {
    pub id: i64,
    pub recipient: Option<String>,
    pub category: String,
    pub priority: i32,
    pub state: String,
    pub delivery: String,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Activity {
    pub sent_last_hour: i64,
    pub delivered_last_hour: i64,
    /// The message that has waited longest among those due now: id and due time.
    pub oldest_due: Option<(i64, DateTime<Utc>)>,
}

/// An incoming message, reassembled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

impl InboxMessage {
    /// Identifies the same message read twice (a restart before its deletion).
    pub fn fingerprint(&self) -> String {
        // FNV-1a over the identifying fields: stable across versions and platforms.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for field in [
            self.modem.as_str(),
            self.sender.as_str(),
            &self.received_at.to_rfc3339(),
            &self.body,
        ] {
            for b in field.bytes().chain([0xFF]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{h:016x}-{}", self.body.chars().count())
    }
}

/// One part of a concatenated incoming message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fragment {
    pub modem: String,
    pub sender: String,
    pub concat_ref: i32,
    pub total: i32,
    pub seq: i32,
    pub body: String,
    pub received_at: DateTime<Utc>,
}

/// The parts of one incoming message that have waited too long for the rest
/// (see [`Store::stale_fragments`]).
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Whether two numbers are the same subscriber: equal digits, or one the national
/// form of the other (`+8613800138000` and `13800138000`): the last 8+ digits agree.
pub fn same_number(a: &str, b: &str) -> bool {
    let da: String = a.chars().filter(char::is_ascii_digit).collect();
    let db: String = b.chars().filter(char::is_ascii_digit).collect();
    if da == db {
        return true;
    }
    let (short, long) = if da.len() <= db.len() {
        (&da, &db)
    } else {
        (&db, &da)
    };
    short.len() >= 8 && long.ends_with(short.trim_start_matches('0'))
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

/// What the rescuer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rescued {
    /// Returned to `retrying` (nothing was on the wire).
    pub retrying: u64,
    /// Held as `ambiguous` (a part was on the wire when the holder vanished).
    pub ambiguous: u64,
}

/// Store errors callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database url {0:?} is not sqlite://, postgres:// or mysql://")]
    UnknownScheme(String),
    #[error("cannot connect to {backend} database {target}: {source}")]
    Connect {
        backend: &'static str,
        target: String,
        source: sqlx::Error,
    },
    #[error("migrating the {backend} database failed: {source}")]
    Migrate {
        backend: &'static str,
        source: sqlx::migrate::MigrateError,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("bad timestamp {0:?} in the database")]
    Time(String),
}

impl StoreError {
    /// The database may come back (restart, network blip): retry with backoff.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Database(e) => matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Protocol(_)
            ),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The url with any password masked, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:****{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The store on one of the three backends.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
    Mysql(mysql::MySqlStore),
}

/// Calls the same method on whichever backend this is.
macro_rules! dispatch {
    ($self:ident . $m:ident ( $($a:expr),* )) => {
        match $self {
            Store::Sqlite(s) => s.$m($($a),*).await,
            Store::Postgres(s) => s.$m($($a),*).await,
            Store::Mysql(s) => s.$m($($a),*).await,
        }
    };
}

impl Store {
    /// Connects by url (`sqlite:///var/lib/smsgw/smsgw.db`, `postgres://...`, `mysql://...`).
    pub async fn connect(url: &str) -> Result<Store> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(sqlite::SqliteStore::connect(url).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(postgres::PgStore::connect(url).await?))
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Ok(Store::Mysql(mysql::MySqlStore::connect(url).await?))
        } else {
            Err(StoreError::UnknownScheme(redact_url(url)))
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
            Store::Mysql(_) => "mysql",
        }
    }

    /// Applies the embedded migrations that have not run yet (never drops anything).
    pub async fn migrate(&self) -> Result<()> {
        dispatch!(self.migrate())
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<()> {
        dispatch!(self.ping())
    }

    pub async fn enqueue(&self, m: &NewMessage) -> Result<Enqueued> {
        dispatch!(self.enqueue(m))
    }

    /// Claims up to `limit` due rows, highest priority first, then earliest due,
    /// then oldest, leasing them to `owner` until `now + lease`.
    pub async fn claim(
        &self,
        owner: &str,
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claimed>> {
        let until = now
            + chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::minutes(10));
        dispatch!(self.claim(owner, limit, until, now, None))
    }

    /// As [`Store::claim`], restricted to rows of `categories`, one category after
    /// the other in the order given: the dispatcher claims urgent categories first,
    /// so that a reminder never waits behind a campaign. Each is one indexed claim
    /// (`outbox_claim_category`), whatever the backlog of other categories.
    pub async fn claim_only(
        &self,
        owner: &str,
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
        categories: &[String],
    ) -> Result<Vec<Claimed>> {
        let until = now
            + chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::minutes(10));
        let mut out = Vec::new();
        for c in categories {
            let left = limit.saturating_sub(out.len() as u32);
            if left == 0 {
                break;
            }
            let got: Vec<Claimed> =
                dispatch!(self.claim(owner, left, until, now, Some(c.as_str())))?;
            out.extend(got);
        }
        Ok(out)
    }

    /// Marks which part is about to go on the wire (`None` after its outcome is
    /// known). If the holder dies meanwhile, the rescuer holds the row as ambiguous.
    /// False when `owner` no longer holds the row.
    pub async fn set_inflight(
        &self,
        owner: &str,
        id: i64,
        seq: Option<i32>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool> {
        dispatch!(self.set_inflight(owner, id, seq, lease_until))
    }

    /// Records a part the network accepted. Unguarded: it happened whoever holds
    /// the row now. Recording the same part twice is a no-op.
    pub async fn record_part(&self, id: i64, part: &PartRecord) -> Result<()> {
        dispatch!(self.record_part(id, part))
    }

    /// Completes a claimed row. False (and nothing written) when `owner` no longer holds it.
    pub async fn complete(
        &self,
        owner: &str,
        id: i64,
        c: &Completion,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let t = c.transition();
        dispatch!(self.complete(owner, id, &t, now))
    }

    /// Returns rows whose lease expired: to `retrying`, or `ambiguous` when a part
    /// was on the wire.
    pub async fn rescue_expired(&self, now: DateTime<Utc>) -> Result<Rescued> {
        dispatch!(self.rescue_expired(now))
    }

    pub async fn get(&self, id: i64) -> Result<Option<OutboxRow>> {
        dispatch!(self.get(id))
    }

    pub async fn parts(&self, id: i64) -> Result<Vec<PartRecord>> {
        dispatch!(self.parts(id))
    }

    /// Rows per (state, category).
    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>> {
        dispatch!(self.counts())
    }

    /// Messages to `recipient` in any of its forms, newest first (at most 20).
    pub async fn find_recipient(&self, recipient: &str) -> Result<Vec<OutboxRow>> {
        let digits: String = recipient.chars().filter(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return Ok(Vec::new());
        }
        let tail = &digits[digits.len().saturating_sub(8)..];
        let rows: Vec<OutboxRow> = dispatch!(self.recipient_like(&format!("%{tail}")))?;
        Ok(rows
            .into_iter()
            .filter(|r| {
                r.recipient
                    .as_deref()
                    .is_some_and(|x| same_number(x, recipient))
            })
            .take(20)
            .collect())
    }

    /// Applies an operator's action; false when the row is not in a state it applies to.
    pub async fn operate(
        &self,
        id: i64,
        action: OperatorAction,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        dispatch!(self.operate(id, action, now))
    }

    /// An ambiguous message turned out sent after all (the modem's late `+CMGS`
    /// confirmed the part in doubt, and every part is now recorded): `sent`.
    /// False if the row is no longer ambiguous (an operator decided first).
    pub async fn resolve_sent(
        &self,
        id: i64,
        modem: &str,
        parts_total: i32,
        delivery: Delivery,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        dispatch!(self.resolve_sent(id, modem, parts_total, delivery, now))
    }

    /// Sent and delivered in the last hour, and the oldest due message.
    pub async fn activity(&self, now: DateTime<Utc>) -> Result<Activity> {
        dispatch!(self.activity(now))
    }

    pub async fn add_opt_out(
        &self,
        recipient: &str,
        keyword: Option<&str>,
        source: &str,
    ) -> Result<()> {
        dispatch!(self.add_opt_out(recipient, keyword, source))
    }

    /// Whether `recipient` opted out, in any of its forms (`+8613...` and `13...`).
    pub async fn is_opted_out(&self, recipient: &str) -> Result<bool> {
        let digits: String = recipient.chars().filter(char::is_ascii_digit).collect();
        let tail = &digits[digits.len().saturating_sub(8)..];
        let pattern = format!("%{tail}");
        let found: Vec<String> = dispatch!(self.opt_outs_like(&pattern))?;
        Ok(found.iter().any(|r| same_number(r, recipient)))
    }

    /// Stores an incoming message; false if it was already stored (same fingerprint).
    pub async fn insert_inbox(&self, m: &InboxMessage) -> Result<bool> {
        dispatch!(self.insert_inbox(m))
    }

    /// Keeps one part of a concatenated incoming message. When the last part
    /// arrives, returns all parts in order and removes them.
    pub async fn add_fragment(&self, f: &Fragment) -> Result<Option<Vec<Fragment>>> {
        dispatch!(self.add_fragment(f))
    }

    /// The incoming messages still missing parts whose newest part was stored
    /// before `before`: the network lost the rest. Nothing is removed here; the
    /// caller stores each message, then [`Store::delete_fragments`] (a crash in
    /// between stores it again, and the inbox's fingerprint ignores the repeat).
    pub async fn stale_fragments(&self, before: DateTime<Utc>) -> Result<Vec<StaleFragments>> {
        let rows: Vec<(i64, Fragment)> = dispatch!(self.stale_fragments(before))?;
        let mut out: Vec<StaleFragments> = Vec::new();
        for (id, f) in rows {
            match out.last_mut() {
                Some(g)
                    if g.fragments[0].modem == f.modem
                        && g.fragments[0].sender == f.sender
                        && g.fragments[0].concat_ref == f.concat_ref
                        && g.fragments[0].total == f.total =>
                {
                    g.ids.push(id);
                    g.fragments.push(f);
                }
                _ => out.push(StaleFragments {
                    ids: vec![id],
                    fragments: vec![f],
                }),
            }
        }
        Ok(out)
    }

    /// Removes fragments by id (after their message is in the inbox).
    pub async fn delete_fragments(&self, ids: &[i64]) -> Result<()> {
        for id in ids {
            dispatch!(self.delete_fragment(*id))?;
        }
        Ok(())
    }

    /// Deletes everything (tests and benchmarks only).
    pub async fn truncate_all(&self) -> Result<()> {
        dispatch!(self.truncate_all())
    }

    /// Records a delivery report: finds the part sent by `modem` with reference `mr`
    /// to `recipient` since `since` (references wrap at 255, so the newest match in the
    /// window wins; national and international forms of a number match), updates it,
    /// and recomputes the message's delivery. Returns the message id, if matched.
    pub async fn apply_report(&self, r: &ReportUpdate) -> Result<Option<i64>> {
        let candidates = dispatch!(self.report_candidates(&r.modem, r.mr, r.since))?;
        let Some((id, seq)) = candidates
            .into_iter()
            .find(|(_, _, to)| same_number(to, &r.recipient))
            .map(|(id, seq, _)| (id, seq))
        else {
            return Ok(None);
        };
        dispatch!(self.update_part(id, seq, r))?;
        let parts = dispatch!(self.part_statuses(id))?;
        let delivery = roll_up(&parts);
        let at = (delivery == Delivery::Delivered).then_some(r.discharge_at);
        dispatch!(self.set_delivery(id, delivery, at))?;
        Ok(Some(id))
    }

    /// Parts sent per modem since `since` (daily limits survive restarts).
    pub async fn parts_sent_since(&self, since: DateTime<Utc>) -> Result<Vec<(String, i64)>> {
        dispatch!(self.parts_sent_since(since))
    }

    /// Messages sent to `recipient`, in any of its forms (`+8613...` and `13...` are
    /// one customer), since `since`, and those on a modem now (state `sending` with a
    /// part on the wire, by any instance): a second message to the same customer
    /// routed to another modem while the first is still going out is counted. Only
    /// of `category` when given. The per-recipient daily limits count with it.
    pub async fn recipient_sent_since(
        &self,
        recipient: &str,
        category: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<i64> {
        let digits: String = recipient.chars().filter(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return Ok(0);
        }
        let pattern = format!("%{}", &digits[digits.len().saturating_sub(8)..]);
        let rows: Vec<(String, i64)> =
            dispatch!(self.recipient_counts_like(&pattern, category.unwrap_or(""), since))?;
        Ok(rows
            .iter()
            .filter(|(r, _)| same_number(r, recipient))
            .map(|(_, n)| n)
            .sum())
    }

    /// Messages whose reports did not arrive before `sent_before`: delivery `unknown`.
    pub async fn expire_pending_delivery(&self, sent_before: DateTime<Utc>) -> Result<u64> {
        dispatch!(self.expire_pending_delivery(sent_before))
    }

    /// A stream of "something was inserted" wake-ups, on PostgreSQL (LISTEN on the
    /// insert trigger's channel). `None` on backends without notifications: poll.
    pub async fn listener(&self) -> Result<Option<sqlx::postgres::PgListener>> {
        match self {
            Store::Postgres(s) => Ok(Some(s.listener().await?)),
            _ => Ok(None),
        }
    }

    /// Runs SQL as another system would (tests, and checking the integration guide's examples).
    pub async fn execute_raw(&self, sql: &str) -> Result<u64> {
        dispatch!(self.execute_raw(sql))
    }
}

/// Canonical UTC time text `YYYY-MM-DD HH:MM:SS.SSS`: SQLite stores times so (text
/// order is time order), and claimed rows carry send_at/expires_at so.
pub(crate) fn time_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// Parses the time forms found in SQLite columns (ours, `datetime()`'s, RFC 3339).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    None
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
    }

    #[test]
    fn numbers_match_across_national_and_international_forms() {
        assert!(same_number("+8613800138000", "13800138000"));
        assert!(same_number("+4915259911630", "015259911630"));
        assert!(same_number("10086", "10086"));
        assert!(!same_number("10086", "110086"));
        assert!(!same_number("+8613800138000", "+8613800138001"));
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

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:****@h/db"
        );
        assert_eq!(redact_url("sqlite:///x.db"), "sqlite:///x.db");
        assert_eq!(
            redact_url("mysql://root@127.0.0.1/test"),
            "mysql://root@127.0.0.1/test"
        );
    }

    #[test]
    fn time_forms() {
        let t = parse_time("2026-11-22 08:00:00").unwrap();
        assert_eq!(parse_time("2026-11-22T08:00:00Z"), Some(t));
        assert_eq!(parse_time(&time_text(t)), Some(t));
        assert_eq!(parse_time("tomorrow"), None);
    }
}
