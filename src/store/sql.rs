//! The store's SQL, written once for every backend.
//!
//! [`Dialect`] is the backend contract, in the shape of River's driver
//! interface: what a database must provide where the dialects really differ
//! (claiming, inserts that ignore duplicates, its clock, its locks, its
//! migrations, how another system's column values are read). [`Sql`] is
//! everything else, generic over the dialect: one body per operation, its SQL
//! written with `?` placeholders (numbered `$n` for PostgreSQL at first use) and
//! its times as [`Ts`]. A fix to an operation lands once.

use super::model::{
    Activity, Call, Claimed, Delivery, Doubt, Fragment, InboxMessage, OperatorAction, OutboxRow,
    PartRecord, PartReport, RecordedReport, ReportCursor, ReportUpdate, Rescued, Settle, State,
    Transition, Unsettled,
};
use super::ts::{self, Ts};
use super::{Result, StoreError};
use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{LazyLock, Mutex};

/// What a backend provides beyond the shared SQL.
pub trait Dialect: Database + Sized {
    /// `sqlite`, `postgres` or `mysql`.
    const NAME: &'static str;
    /// Placeholders are `$1, $2...` (PostgreSQL) rather than `?`.
    const NUMBERED: bool;
    /// The database's clock, as one [`Ts`] column.
    const NOW: &'static str;
    /// Records an acknowledged part, ignoring a repeat (`outbox_id`, `seq`).
    const INSERT_PART: &'static str;
    /// Adds an opt-out, ignoring a repeat.
    const INSERT_OPT_OUT: &'static str;
    /// Keeps a fragment, ignoring a repeat.
    const INSERT_FRAGMENT: &'static str;
    /// The fragments of one message, locked for the transaction where the
    /// database needs it (`FOR UPDATE`).
    const FRAGMENTS_OF: &'static str;
    /// The oldest due row (the claim index's own condition).
    const OLDEST_DUE: &'static str;
    /// Whether a row of one category (`?`) is due at `?`: read before its
    /// claim, so that an urgent category with nothing due costs a read beside
    /// the writer, not a write in its queue. Answered from
    /// `outbox_claim_category`, in that index's own condition.
    const DUE_IN_CATEGORY: &'static str;

    /// The settings that decide whether a commit survives a power cut, as
    /// rows of two text columns `(name, value)` ([`super::durability`]).
    const SETTINGS: &'static str;

    fn rows_affected(r: &Self::QueryResult) -> u64;

    /// Starts a transaction that writes (SQLite takes the write lock up front).
    fn begin_write(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self>>> + Send;

    /// Serialises the fragments of one incoming message inside `tx` where the
    /// locking read ([`Dialect::FRAGMENTS_OF`]) does not.
    fn lock_fragments<'a>(
        tx: &'a mut sqlx::Transaction<'static, Self>,
        f: &'a Fragment,
    ) -> impl Future<Output = Result<()>> + Send + 'a;

    /// Another system's text column: `Ok(None)` for NULL; an error naming what is
    /// wrong with a value smsgw cannot read as text.
    fn text(row: &Self::Row, col: &str) -> std::result::Result<Option<String>, String>;
    /// Another system's integer column.
    fn int(row: &Self::Row, col: &str) -> std::result::Result<Option<i64>, String>;
    /// Another system's boolean column.
    fn flag(row: &Self::Row, col: &str) -> std::result::Result<bool, String>;
    /// Another system's time column.
    fn time(row: &Self::Row, col: &str) -> std::result::Result<Option<DateTime<Utc>>, String>;
}

/// A backend: its pools and the shared operations.
#[derive(Debug)]
pub struct Sql<DB: Database> {
    /// Writes, and the reads a write depends on.
    pub(crate) pool: Pool<DB>,
    /// Reads that decide nothing written in the same step: lookups for the
    /// control socket, history counts, the parts a claimed row already has.
    /// On SQLite a read-only pool of its own beside a writer pool of one
    /// connection: the daemon's writes queue in the process (first come, first
    /// served) instead of meeting SQLite's lock, whose busy handler sleeps
    /// 1, 2, 5... ms before it looks again; reads never wait for the writer
    /// (WAL). On PostgreSQL and MariaDB the same pool as `pool`.
    pub(crate) read: Pool<DB>,
}

impl<DB: Database> Clone for Sql<DB> {
    fn clone(&self) -> Self {
        Sql {
            pool: self.pool.clone(),
            read: self.read.clone(),
        }
    }
}

/// `?` placeholders as `$1, $2...`, computed once per statement.
fn numbered(sql: &'static str) -> &'static str {
    static CACHE: LazyLock<Mutex<HashMap<usize, &'static str>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    cache.entry(sql.as_ptr() as usize).or_insert_with(|| {
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        let mut quoted = false;
        for c in sql.chars() {
            match c {
                '\'' => {
                    quoted = !quoted;
                    out.push(c);
                }
                '?' if !quoted => {
                    n += 1;
                    out.push_str(&format!("${n}"));
                }
                _ => out.push(c),
            }
        }
        Box::leak(out.into_boxed_str())
    })
}

/// The columns of an outbox row read back ([`OutboxRow`]).
const ROW: &str =
    "id, recipient, category, priority, state, delivery, attempts, last_error, modem, \
                   parts_total, sent_at, lease_owner, external_ref";

/// A claim's columns, for `Sql::claimed`.
pub const CLAIMED: &str =
    "id, recipient, body, category, priority, send_at, expires_at, modem_group, \
                           request_report, flash, attempts, due_at, lease_until";

const SET_INFLIGHT: &str = "UPDATE outbox SET inflight_part = ?, lease_until = ?
     WHERE id = ? AND state = 'sending' AND lease_owner = ?";

const HAND_OVER: &str =
    "UPDATE outbox SET inflight_part = ?, modem = ?, parts_total = ?, lease_until = ?, updated_at = ?
     WHERE id = ? AND state = 'sending' AND lease_owner = ?";

/// After a part's record: the marker moves to the next part (or stays on the
/// last, recorded one) and the lease is renewed, if the row is still ours.
const ADVANCE: &str =
    "UPDATE outbox SET inflight_part = COALESCE(?, inflight_part), lease_until = ?
     WHERE id = ? AND state = 'sending' AND lease_owner = ?";

const RENEW_ALL: &str =
    "UPDATE outbox SET lease_until = ? WHERE state = 'sending' AND lease_owner = ?";

const COMPLETE: &str = "UPDATE outbox SET state = ?, last_error = COALESCE(?, last_error),
        attempts = attempts + ?, due_at = COALESCE(?, due_at),
        sent_at = CASE WHEN ? THEN ? ELSE sent_at END,
        modem = COALESCE(?, modem), parts_total = COALESCE(?, parts_total),
        delivery = CASE WHEN delivery IN ('delivered', 'failed') THEN delivery ELSE COALESCE(?, delivery) END,
        lease_owner = NULL, lease_until = NULL,
        inflight_part = CASE WHEN ? THEN inflight_part ELSE NULL END, updated_at = ?
     WHERE id = ? AND state = 'sending' AND lease_owner = ?";

const UNSETTLED_OF: &str =
    "SELECT id, lease_owner, lease_until, inflight_part, parts_total, modem, request_report
     FROM outbox WHERE state = 'sending' AND lease_owner = ?";

const UNSETTLED_EXPIRED: &str =
    "SELECT id, lease_owner, lease_until, inflight_part, parts_total, modem, request_report
     FROM outbox WHERE state = 'sending' AND lease_until < ?";

const RECORDED_SEQS: &str = "SELECT seq FROM outbox_parts WHERE outbox_id = ?";

/// Every settling write is guarded by the holder and lease it was decided on.
/// A requeued row keeps its place in the queue (its due time, unless that lies
/// ahead): it was first in line when its holder died, and must not wait behind
/// a whole campaign queued after it.
const SETTLE_REQUEUE: &str = "UPDATE outbox SET state = 'retrying', last_error = ?,
        due_at = CASE WHEN due_at <= ? THEN due_at ELSE ? END,
        lease_owner = NULL, lease_until = NULL, inflight_part = NULL, updated_at = ?
     WHERE id = ? AND state = 'sending' AND lease_owner = ? AND lease_until = ?";

const SETTLE_AMBIGUOUS: &str = "UPDATE outbox SET state = 'ambiguous', last_error = ?,
        lease_owner = NULL, lease_until = NULL, updated_at = ?
     WHERE id = ? AND state = 'sending' AND lease_owner = ? AND lease_until = ?";

const SETTLE_SENT: &str = "UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1,
        delivery = CASE WHEN delivery IN ('delivered', 'failed') THEN delivery ELSE ? END,
        lease_owner = NULL, lease_until = NULL, inflight_part = NULL, updated_at = ?
     WHERE id = ? AND state = 'sending' AND lease_owner = ? AND lease_until = ?";

const NEXT_EXPIRY: &str = "SELECT MIN(lease_until) FROM outbox WHERE state = 'sending'";

/// A row an operator (or a late `+CMGS`) puts back keeps its place in the queue,
/// as a requeued one does: due now at the latest, never behind what came after.
const OPERATE: &str = "UPDATE outbox SET state = ?, due_at = CASE WHEN due_at <= ? THEN due_at ELSE ? END, updated_at = ?,
        last_error = COALESCE(?, last_error), inflight_part = NULL
     WHERE id = ? AND state IN (?, ?, ?, ?)";

const RESOLVE_SENT: &str =
    "UPDATE outbox SET state = 'sent', sent_at = ?, updated_at = ?, modem = ?,
        parts_total = ?,
        delivery = CASE WHEN delivery IN ('delivered', 'failed') THEN delivery ELSE ? END,
        last_error = NULL, attempts = attempts + 1, inflight_part = NULL
     WHERE id = ? AND state = 'ambiguous'";

const DOUBTS_ON: &str =
    "SELECT id, inflight_part, parts_total, recipient, request_report, updated_at FROM outbox
     WHERE state = 'ambiguous' AND modem = ? AND inflight_part IS NOT NULL
     ORDER BY updated_at DESC, id DESC LIMIT 8";

const ACTIVITY: &str = "SELECT (SELECT COUNT(*) FROM outbox WHERE sent_at >= ?),
            (SELECT COUNT(*) FROM outbox WHERE delivered_at >= ?)";

const PARTS: &str =
    "SELECT seq, total, modem, recipient, mr, submitted_at, status, report_at, tp_status FROM outbox_parts
     WHERE outbox_id = ? ORDER BY seq";

/// Status and metrics: the history through outbox_state_category, then the
/// claimable rows through the claim index.
pub const COUNTS: &str = "SELECT state, category, COUNT(*) FROM outbox WHERE state NOT IN ('queued', 'retrying') GROUP BY state, category
     UNION ALL
     SELECT state, category, COUNT(*) FROM outbox WHERE state IN ('queued', 'retrying') GROUP BY state, category
     ORDER BY 1, 2";

const OPT_OUTS_LIKE: &str = "SELECT recipient FROM opt_outs WHERE recipient LIKE ?";

const INBOX_HAS: &str = "SELECT COUNT(*) FROM inbox WHERE fingerprint = ?";

const INSERT_INBOX: &str = "INSERT INTO inbox (modem, sender, body, parts, missing_parts, received_at, opt_out, fingerprint)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

const FRAGMENT_DONE: &str = "SELECT COUNT(*) FROM inbox_fragments_done WHERE fingerprint = ?";

const INSERT_FRAGMENT_DONE: &str =
    "INSERT INTO inbox_fragments_done (fingerprint, done_at) VALUES (?, ?)";

const DELETE_FRAGMENTS_OF: &str =
    "DELETE FROM inbox_fragments WHERE modem = ? AND sender = ? AND concat_ref = ? AND total = ?";

const STALE_FRAGMENTS: &str =
    "SELECT id, modem, sender, concat_ref, total, seq, body, received_at FROM inbox_fragments
      WHERE (modem, sender, concat_ref, total) IN (
            SELECT modem, sender, concat_ref, total FROM inbox_fragments
             GROUP BY modem, sender, concat_ref, total HAVING MAX(created_at) < ?)
      ORDER BY modem, sender, concat_ref, total, seq";

const DELETE_FRAGMENT: &str = "DELETE FROM inbox_fragments WHERE id = ?";

const FORGET_DONE_FRAGMENTS: &str = "DELETE FROM inbox_fragments_done WHERE done_at < ?";

const REPORT_CANDIDATES: &str = "SELECT outbox_id, seq, recipient FROM outbox_parts
     WHERE modem = ? AND mr = ? AND submitted_at >= ? ORDER BY submitted_at DESC, id DESC";

/// `report_at` is when the part's status was last recorded; the same report
/// recorded again (a journal replayed, a retry after a commit whose answer
/// was lost) leaves it, so a reader of reports in recording order gets each
/// once. First in the SET list: MySQL reads the columns already set.
const UPDATE_PART: &str = "UPDATE outbox_parts
     SET report_at = CASE WHEN status = ? AND tp_status = ? THEN report_at ELSE ? END,
         status = ?, tp_status = ?, discharge_at = ?
     WHERE outbox_id = ? AND seq = ?";

const PART_STATUSES: &str = "SELECT status, total FROM outbox_parts WHERE outbox_id = ?";

const SET_DELIVERY: &str =
    "UPDATE outbox SET delivery = ?, delivered_at = COALESCE(?, delivered_at) WHERE id = ?";

const PARTS_SENT_SINCE: &str =
    "SELECT modem, COUNT(*) FROM outbox_parts WHERE submitted_at >= ? GROUP BY modem";

/// Per-recipient daily limits: two branches, each through its index: today's sent
/// rows (outbox_sent_recipient), and the few rows on a modem now.
pub const RECIPIENT_COUNTS: &str = "SELECT recipient, COUNT(*) FROM (
        SELECT recipient, category FROM outbox WHERE sent_at >= ? AND recipient LIKE ?
        UNION ALL
        SELECT recipient, category FROM outbox
         WHERE state = 'sending' AND inflight_part IS NOT NULL
           AND (sent_at IS NULL OR sent_at < ?) AND recipient LIKE ?
     ) AS t WHERE (? = '' OR category = ?) GROUP BY recipient";

/// Housekeeping's report timeout (every 30 s; on SQLite it holds the write lock).
pub const EXPIRE_PARTS: &str =
    "UPDATE outbox_parts SET status = 'unknown' WHERE status = 'pending' AND submitted_at < ?";
pub const EXPIRE_OUTBOX: &str =
    "UPDATE outbox SET delivery = 'unknown' WHERE delivery = 'pending' AND sent_at < ?";

/// What [`Sql::add_fragment`] did with a part of an incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FragmentOutcome {
    /// Kept until the other parts arrive.
    Waiting,
    /// This part was the last: the message is in the inbox (`new`: stored by
    /// this call), its parts gone, in one transaction.
    Stored { message: InboxMessage, new: bool },
    /// A part of a message already in the inbox (read again after a crash).
    AlreadyStored,
}

impl<DB> Sql<DB>
where
    DB: Dialect,
    <DB as Database>::Arguments: IntoArguments<DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    for<'c> &'c mut <DB as Database>::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i32: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Ts: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i32>: Encode<'q, DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> Option<Ts>: Encode<'q, DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
{
    /// The statement in this backend's placeholder style.
    pub(crate) fn q(sql: &'static str) -> &'static str {
        if DB::NUMBERED {
            numbered(sql)
        } else {
            sql
        }
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The database's clock: lease times are compared on it, so instances whose
    /// clocks disagree never hold one row together.
    pub async fn db_now(&self) -> Result<DateTime<Utc>> {
        let r = sqlx::query(DB::NOW).fetch_one(&self.read).await?;
        Ok(r.try_get::<Ts, _>(0)?.0)
    }

    /// Whether this database keeps a commit through a power cut: the
    /// settings in force, judged ([`super::durability::judge`]). Read on
    /// the writer's connection, whose settings are the ones that count.
    pub async fn durability(&self) -> Result<super::durability::Durability> {
        let rows = sqlx::query(DB::SETTINGS).fetch_all(&self.pool).await?;
        let mut settings = Vec::with_capacity(rows.len());
        for r in &rows {
            settings.push((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?));
        }
        Ok(super::durability::judge(<DB as Dialect>::NAME, &settings))
    }

    pub async fn execute_raw(&self, sql: &str) -> Result<u64> {
        let r = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&r))
    }

    /// Decodes a claimed row ([`CLAIMED`] columns), each column on its own: a
    /// value smsgw cannot read becomes the row's `unreadable` reason, never an
    /// error for the batch.
    pub(crate) fn claimed(r: &DB::Row) -> Result<Claimed> {
        let id: i64 = r.try_get("id")?;
        let lease_until: Ts = r.try_get("lease_until")?;
        let mut problems: Vec<String> = Vec::new();
        let mut note = |col: &str, e: String| problems.push(format!("{col}: {e}"));
        let text = |col: &str, note: &mut dyn FnMut(&str, String)| match DB::text(r, col) {
            Ok(v) => v,
            Err(e) => {
                note(col, e);
                None
            }
        };
        let recipient = text("recipient", &mut note);
        let body = text("body", &mut note);
        let category = text("category", &mut note).unwrap_or_else(|| "notice".into());
        let modem_group = text("modem_group", &mut note);
        let priority = match DB::int(r, "priority") {
            Ok(Some(p)) => i32::try_from(p).unwrap_or_else(|_| {
                note(
                    "priority",
                    format!("{p} is out of range ({}..={})", i32::MIN, i32::MAX),
                );
                0
            }),
            Ok(None) => 0,
            Err(e) => {
                note("priority", e);
                0
            }
        };
        let time = |col: &str, note: &mut dyn FnMut(&str, String)| match DB::time(r, col) {
            Ok(Some(t)) if ts::in_range(t) => Some(t),
            Ok(Some(t)) => {
                note(
                    col,
                    format!("{} is outside the years 1000 to 9999", ts::time_text(t)),
                );
                None
            }
            Ok(None) => None,
            Err(e) => {
                note(col, e);
                None
            }
        };
        let send_at = time("send_at", &mut note);
        let expires_at = time("expires_at", &mut note);
        let due_at = time("due_at", &mut note);
        let flag = |col: &str, note: &mut dyn FnMut(&str, String)| {
            DB::flag(r, col).unwrap_or_else(|e| {
                note(col, e);
                false
            })
        };
        let request_report = flag("request_report", &mut note);
        let flash = flag("flash", &mut note);
        let attempts = DB::int(r, "attempts").ok().flatten().unwrap_or(0);
        Ok(Claimed {
            id,
            recipient,
            body,
            category,
            priority,
            send_at,
            expires_at,
            modem_group,
            request_report,
            flash,
            attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
            due_at: due_at.unwrap_or(lease_until.0),
            lease_until: lease_until.0,
            parts_done: Vec::new(),
            unreadable: (!problems.is_empty()).then(|| problems.join("; ")),
        })
    }

    /// The parts already recorded for claimed rows (never sent again).
    pub(crate) async fn fill_parts_done(&self, rows: &mut [Claimed]) -> Result<()> {
        for c in rows.iter_mut() {
            let seqs = sqlx::query(Self::q(RECORDED_SEQS))
                .bind(c.id)
                .fetch_all(&self.read)
                .await?;
            c.parts_done = seqs
                .iter()
                .map(|r| r.try_get::<i32, _>(0))
                .collect::<std::result::Result<_, _>>()?;
            c.parts_done.sort_unstable();
        }
        Ok(())
    }

    /// Whether a row of `category` is due at `now`.
    pub async fn due_in_category(&self, category: &str, now: DateTime<Utc>) -> Result<bool> {
        let r = sqlx::query(Self::q(DB::DUE_IN_CATEGORY))
            .bind(category)
            .bind(Ts(now))
            .fetch_optional(&self.read)
            .await?;
        Ok(r.is_some())
    }

    /// Marks which part is about to go on the wire. False when `owner` no longer holds the row.
    pub async fn set_inflight(
        &self,
        owner: &str,
        id: i64,
        seq: Option<i32>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool> {
        let r = sqlx::query(Self::q(SET_INFLIGHT))
            .bind(seq)
            .bind(Ts(lease_until))
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&r) == 1)
    }

    /// Hands a claimed row to `modem`: the part about to go on the wire, the
    /// message's parts and a renewed lease. False when `owner` no longer holds it.
    #[allow(clippy::too_many_arguments)]
    pub async fn hand_over(
        &self,
        owner: &str,
        id: i64,
        seq: i32,
        modem: &str,
        parts_total: i32,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let r = sqlx::query(Self::q(HAND_OVER))
            .bind(seq)
            .bind(modem)
            .bind(parts_total)
            .bind(Ts(lease_until))
            .bind(Ts(now))
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&r) == 1)
    }

    /// Records a part the network accepted. Unguarded: it happened whoever holds
    /// the row now. Recording the same part twice is a no-op.
    pub async fn record_part(&self, id: i64, p: &PartRecord) -> Result<()> {
        Self::insert_part(&self.pool, id, p).await
    }

    async fn insert_part<'e, E>(e: E, id: i64, p: &PartRecord) -> Result<()>
    where
        E: Executor<'e, Database = DB>,
    {
        sqlx::query(Self::q(DB::INSERT_PART))
            .bind(id)
            .bind(p.seq)
            .bind(p.total)
            .bind(p.modem.as_str())
            .bind(p.recipient.as_str())
            .bind(p.mr.map(i32::from))
            .bind(Ts(p.submitted_at))
            .bind(p.status.as_str())
            .execute(e)
            .await?;
        Ok(())
    }

    /// One acknowledged part, in one transaction: its record (unguarded: a fact)
    /// and, if the row is still `owner`'s, the marker moved to `next` (the part
    /// that goes next; `None`: the last part, the marker stays on it) and the lease
    /// renewed. False when the row is no longer ours: the send stops.
    pub async fn part_acknowledged(
        &self,
        owner: &str,
        id: i64,
        p: &PartRecord,
        next: Option<i32>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = DB::begin_write(&self.pool).await?;
        Self::insert_part(&mut *tx, id, p).await?;
        let r = sqlx::query(Self::q(ADVANCE))
            .bind(next)
            .bind(Ts(lease_until))
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(DB::rows_affected(&r) == 1)
    }

    /// Renews the lease of every row `owner` holds; how many.
    pub async fn renew_leases(&self, owner: &str, lease_until: DateTime<Utc>) -> Result<u64> {
        let r = sqlx::query(Self::q(RENEW_ALL))
            .bind(Ts(lease_until))
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&r))
    }

    /// Completes a claimed row. False (and nothing written) when `owner` no longer holds it.
    pub async fn complete(
        &self,
        owner: &str,
        id: i64,
        t: &Transition,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        Self::complete_in(&self.pool, owner, id, t, now).await
    }

    /// Completes several claimed rows in one transaction; for each, whether it
    /// was still `owner`'s (nothing is written for one that was not).
    pub async fn complete_all(
        &self,
        owner: &str,
        done: &[(i64, Transition)],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>> {
        if let [(id, t)] = done {
            return Ok(vec![self.complete(owner, *id, t, now).await?]);
        }
        let mut tx = DB::begin_write(&self.pool).await?;
        let mut ours = Vec::with_capacity(done.len());
        for (id, t) in done {
            ours.push(Self::complete_in(&mut *tx, owner, *id, t, now).await?);
        }
        tx.commit().await?;
        Ok(ours)
    }

    async fn complete_in<'e, E>(
        e: E,
        owner: &str,
        id: i64,
        t: &Transition,
        now: DateTime<Utc>,
    ) -> Result<bool>
    where
        E: Executor<'e, Database = DB>,
    {
        let r = sqlx::query(Self::q(COMPLETE))
            .bind(t.state.as_str())
            .bind(t.error.as_deref())
            .bind(t.attempt_increment)
            .bind(t.due.map(Ts))
            .bind(t.sent)
            .bind(Ts(now))
            .bind(t.modem.as_deref())
            .bind(t.parts_total)
            .bind(t.delivery.map(Delivery::as_str))
            .bind(t.keep_inflight)
            .bind(Ts(now))
            .bind(id)
            .bind(owner)
            .execute(e)
            .await?;
        Ok(DB::rows_affected(&r) == 1)
    }

    /// Settles the `sending` rows left by a holder that is gone: `owner`'s (a
    /// restarted instance's predecessor), or, with `owner` None, every row whose
    /// lease expired before `now`. See [`super::model::settle`].
    pub async fn settle(&self, owner: Option<&str>, now: DateTime<Utc>) -> Result<Rescued> {
        let rows = match owner {
            Some(o) => {
                sqlx::query(Self::q(UNSETTLED_OF))
                    .bind(o)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(Self::q(UNSETTLED_EXPIRED))
                    .bind(Ts(now))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let why = if owner.is_some() {
            "smsgw restarted"
        } else {
            "lease expired"
        };
        let mut done = Rescued::default();
        for r in &rows {
            let mut u = Unsettled {
                id: r.try_get("id")?,
                lease_owner: r.try_get("lease_owner")?,
                lease_until: r.try_get::<Ts, _>("lease_until")?.0,
                inflight_part: r.try_get("inflight_part")?,
                parts_total: r.try_get("parts_total")?,
                modem: r.try_get("modem")?,
                request_report: DB::flag(r, "request_report").unwrap_or(true),
                recorded: Vec::new(),
            };
            for s in sqlx::query(Self::q(RECORDED_SEQS))
                .bind(u.id)
                .fetch_all(&self.pool)
                .await?
            {
                u.recorded.push(s.try_get(0)?);
            }
            let decision = super::model::settle(&u, why);
            let q = match &decision {
                Settle::Requeue { reason } => sqlx::query(Self::q(SETTLE_REQUEUE))
                    .bind(reason.as_str())
                    .bind(Ts(now))
                    .bind(Ts(now))
                    .bind(Ts(now)),
                Settle::Ambiguous { reason } => sqlx::query(Self::q(SETTLE_AMBIGUOUS))
                    .bind(reason.as_str())
                    .bind(Ts(now)),
                Settle::Sent { delivery, .. } => sqlx::query(Self::q(SETTLE_SENT))
                    .bind(Ts(now))
                    .bind(delivery.as_str())
                    .bind(Ts(now)),
            };
            let r = q
                .bind(u.id)
                .bind(u.lease_owner.as_str())
                .bind(Ts(u.lease_until))
                .execute(&self.pool)
                .await?;
            // Nothing written: its holder renewed or completed it meanwhile.
            if DB::rows_affected(&r) == 1 {
                match decision {
                    Settle::Requeue { .. } => done.retrying += 1,
                    Settle::Ambiguous { .. } => done.ambiguous += 1,
                    Settle::Sent { .. } => done.sent += 1,
                }
            }
        }
        Ok(done)
    }

    /// When the next lease of any holder expires (the rescuer wakes then: a dead
    /// instance's rows are taken over when their lease ends, not a period later).
    pub async fn next_lease_expiry(&self) -> Result<Option<DateTime<Utc>>> {
        let r = sqlx::query(NEXT_EXPIRY).fetch_one(&self.read).await?;
        Ok(r.try_get::<Option<Ts>, _>(0)?.map(|t| t.0))
    }

    /// Reads one row back (another system's values read leniently: a row smsgw
    /// rejected must still be shown with its reason).
    fn outbox_row(r: &DB::Row) -> Result<OutboxRow> {
        let lossy = |col: &str| DB::text(r, col).unwrap_or_else(|e| Some(format!("({e})")));
        Ok(OutboxRow {
            id: r.try_get("id")?,
            recipient: lossy("recipient"),
            category: lossy("category").unwrap_or_default(),
            priority: DB::int(r, "priority")
                .ok()
                .flatten()
                .and_then(|p| i32::try_from(p).ok())
                .unwrap_or(0),
            state: State::parse(&r.try_get::<String, _>("state")?)
                .ok_or_else(|| StoreError::Time("unknown state".into()))?,
            delivery: Delivery::parse(&r.try_get::<String, _>("delivery")?),
            attempts: r.try_get("attempts")?,
            last_error: r.try_get("last_error")?,
            modem: r.try_get("modem")?,
            parts_total: r.try_get("parts_total")?,
            sent_at: r.try_get::<Option<Ts>, _>("sent_at")?.map(|t| t.0),
            lease_owner: r.try_get("lease_owner")?,
            external_ref: lossy("external_ref"),
        })
    }

    pub async fn get(&self, id: i64) -> Result<Option<OutboxRow>> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| format!("SELECT {ROW} FROM outbox WHERE id = ?"));
        let sql: &'static str = SQL.as_str();
        let Some(r) = sqlx::query(Self::q(sql))
            .bind(id)
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Self::outbox_row(&r)?))
    }

    pub async fn recipient_like(&self, pattern: &str) -> Result<Vec<OutboxRow>> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!("SELECT {ROW} FROM outbox WHERE recipient LIKE ? ORDER BY id DESC LIMIT 200")
        });
        let sql: &'static str = SQL.as_str();
        let rows = sqlx::query(Self::q(sql))
            .bind(pattern)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(Self::outbox_row).collect()
    }

    pub async fn operate(&self, id: i64, a: OperatorAction, now: DateTime<Utc>) -> Result<bool> {
        let [s1, s2, s3, s4] = a.from().map(State::as_str);
        let r = sqlx::query(Self::q(OPERATE))
            .bind(a.to().as_str())
            .bind(Ts(now))
            .bind(Ts(now))
            .bind(Ts(now))
            .bind(a.note())
            .bind(id)
            .bind(s1)
            .bind(s2)
            .bind(s3)
            .bind(s4)
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&r) == 1)
    }

    pub async fn resolve_sent(
        &self,
        id: i64,
        modem: &str,
        parts_total: i32,
        delivery: Delivery,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let r = sqlx::query(Self::q(RESOLVE_SENT))
            .bind(Ts(now))
            .bind(Ts(now))
            .bind(modem)
            .bind(parts_total)
            .bind(delivery.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&r) == 1)
    }

    /// Ambiguous messages whose part in doubt is on `modem`, newest first.
    pub async fn doubts_on(&self, modem: &str) -> Result<Vec<Doubt>> {
        let rows = sqlx::query(Self::q(DOUBTS_ON))
            .bind(modem)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Doubt {
                    id: r.try_get("id")?,
                    seq: r.try_get("inflight_part")?,
                    parts_total: r.try_get::<Option<i32>, _>("parts_total")?.unwrap_or(1),
                    recipient: DB::text(r, "recipient").ok().flatten().unwrap_or_default(),
                    request_report: DB::flag(r, "request_report").unwrap_or(true),
                    since: r.try_get::<Ts, _>("updated_at")?.0,
                })
            })
            .collect()
    }

    pub async fn activity(&self, now: DateTime<Utc>) -> Result<Activity> {
        let hour_ago = Ts(now - chrono::Duration::hours(1));
        let r = sqlx::query(Self::q(ACTIVITY))
            .bind(hour_ago)
            .bind(hour_ago)
            .fetch_one(&self.read)
            .await?;
        let oldest = sqlx::query(Self::q(DB::OLDEST_DUE))
            .bind(Ts(now))
            .fetch_optional(&self.read)
            .await?;
        Ok(Activity {
            sent_last_hour: r.try_get(0)?,
            delivered_last_hour: r.try_get(1)?,
            oldest_due: match oldest {
                Some(o) => Some((o.try_get(0)?, o.try_get::<Ts, _>(1)?.0)),
                None => None,
            },
        })
    }

    pub async fn parts(&self, id: i64) -> Result<Vec<PartRecord>> {
        Ok(self
            .part_reports(id)
            .await?
            .into_iter()
            .map(|p| p.part)
            .collect())
    }

    /// The parts of a row with what their reports said.
    pub async fn part_reports(&self, id: i64) -> Result<Vec<PartReport>> {
        let rows = sqlx::query(Self::q(PARTS))
            .bind(id)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(Self::part_report).collect()
    }

    /// Reports recorded after `after` (a report time and part id), oldest
    /// first, on rows whose dedupe key starts with `key_prefix`: for a layer
    /// that copies each report once into another tool's table.
    pub async fn reports_after(
        &self,
        key_prefix: &str,
        after: ReportCursor,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<RecordedReport>> {
        const SQL: &str = "SELECT p.id, o.dedupe_key, p.seq, p.total, p.modem, p.recipient, p.mr,
                p.submitted_at, p.status, p.report_at, p.tp_status
             FROM outbox_parts p JOIN outbox o ON o.id = p.outbox_id
             WHERE p.report_at IS NOT NULL AND (p.report_at > ? OR (p.report_at = ? AND p.id > ?))
               AND p.report_at < ? AND o.dedupe_key LIKE ?
             ORDER BY p.report_at, p.id LIMIT ?";
        let at = Ts(after.at);
        let rows = sqlx::query(Self::q(SQL))
            .bind(at)
            .bind(at)
            .bind(after.part_id)
            .bind(Ts(until))
            .bind(format!("{key_prefix}%"))
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                let report = Self::part_report(r)?;
                Ok(RecordedReport {
                    cursor: ReportCursor {
                        at: report.report_at.unwrap_or(after.at),
                        part_id: r.try_get("id")?,
                    },
                    dedupe_key: r.try_get("dedupe_key")?,
                    report,
                })
            })
            .collect()
    }

    /// A compatibility layer's cursor (`compat_cursors`): its value and
    /// part, if it has one.
    pub async fn cursor(&self, name: &str) -> Result<Option<(i64, i64)>> {
        const SQL: &str = "SELECT value, part FROM compat_cursors WHERE name = ?";
        let r = sqlx::query(Self::q(SQL))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match r {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
            None => None,
        })
    }

    /// Moves a cursor forward to (`value`, `part`), the two compared in that
    /// order and written together; never back, so two instances copying the
    /// same rows leave it at the furthest.
    pub async fn set_cursor(&self, name: &str, value: i64, part: i64) -> Result<()> {
        const INSERT: &str = "INSERT INTO compat_cursors (name, value, part) VALUES (?, ?, ?)";
        if self.cursor_forward(name, value, part).await? > 0 || self.cursor(name).await?.is_some() {
            return Ok(());
        }
        match sqlx::query(Self::q(INSERT))
            .bind(name)
            .bind(value)
            .bind(part)
            .execute(&self.pool)
            .await
        {
            Ok(_) => Ok(()),
            // Another instance inserted it first: move it on from there.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                self.cursor_forward(name, value, part).await.map(|_| ())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn cursor_forward(&self, name: &str, value: i64, part: i64) -> Result<u64> {
        const UPDATE: &str = "UPDATE compat_cursors SET value = ?, part = ?
             WHERE name = ? AND (value < ? OR (value = ? AND part < ?))";
        let r = sqlx::query(Self::q(UPDATE))
            .bind(value)
            .bind(part)
            .bind(name)
            .bind(value)
            .bind(value)
            .bind(part)
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&r))
    }

    fn part_report(r: &DB::Row) -> Result<PartReport> {
        Ok(PartReport {
            report_at: r.try_get::<Option<Ts>, _>("report_at")?.map(|t| t.0),
            tp_status: r.try_get("tp_status")?,
            part: PartRecord {
                seq: r.try_get("seq")?,
                total: r.try_get("total")?,
                modem: r.try_get("modem")?,
                recipient: r.try_get("recipient")?,
                mr: r
                    .try_get::<Option<i32>, _>("mr")?
                    .and_then(|m| u8::try_from(m).ok()),
                submitted_at: r.try_get::<Ts, _>("submitted_at")?.0,
                status: Delivery::parse(&r.try_get::<String, _>("status")?),
            },
        })
    }

    /// Incoming messages after `after_id` stored since `since`, oldest first:
    /// for a layer that copies them to another tool's table.
    pub async fn inbox_after(
        &self,
        after_id: i64,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(i64, InboxMessage)>> {
        const SQL: &str = "SELECT id, modem, sender, body, parts, received_at, opt_out FROM inbox
             WHERE id > ? AND stored_at >= ? AND stored_at < ? ORDER BY id LIMIT ?";
        let rows = sqlx::query(Self::q(SQL))
            .bind(after_id)
            .bind(Ts(since))
            .bind(Ts(until))
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    InboxMessage {
                        modem: r.try_get("modem")?,
                        sender: r.try_get("sender")?,
                        body: r.try_get("body")?,
                        parts: r.try_get("parts")?,
                        missing_parts: 0,
                        received_at: r.try_get::<Ts, _>("received_at")?.0,
                        opt_out: r.try_get("opt_out")?,
                    },
                ))
            })
            .collect()
    }

    /// Records an incoming call.
    pub async fn insert_call(&self, c: &Call) -> Result<()> {
        const SQL: &str =
            "INSERT INTO calls (modem, caller, received_at, hung_up) VALUES (?, ?, ?, ?)";
        sqlx::query(Self::q(SQL))
            .bind(c.modem.as_str())
            .bind(c.caller.as_deref())
            .bind(Ts(c.received_at))
            .bind(c.hung_up)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Calls after `after_id`, oldest first.
    pub async fn calls_after(
        &self,
        after_id: i64,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(i64, Call)>> {
        const SQL: &str = "SELECT id, modem, caller, received_at, hung_up FROM calls
             WHERE id > ? AND received_at < ? ORDER BY id LIMIT ?";
        let rows = sqlx::query(Self::q(SQL))
            .bind(after_id)
            .bind(Ts(until))
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    Call {
                        modem: r.try_get("modem")?,
                        caller: r.try_get("caller")?,
                        received_at: r.try_get::<Ts, _>("received_at")?.0,
                        hung_up: r.try_get("hung_up")?,
                    },
                ))
            })
            .collect()
    }

    /// The id of the incoming message with this fingerprint, if stored.
    pub async fn inbox_id(&self, fingerprint: &str) -> Result<Option<i64>> {
        const SQL: &str = "SELECT id FROM inbox WHERE fingerprint = ?";
        let r = sqlx::query(Self::q(SQL))
            .bind(fingerprint)
            .fetch_optional(&self.read)
            .await?;
        Ok(match r {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// The row queued with this dedupe key, if any.
    pub async fn by_dedupe_key(&self, key: &str) -> Result<Option<OutboxRow>> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| format!("SELECT {ROW} FROM outbox WHERE dedupe_key = ?"));
        let sql: &'static str = SQL.as_str();
        let Some(r) = sqlx::query(Self::q(sql))
            .bind(key)
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Self::outbox_row(&r)?))
    }

    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(COUNTS).fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| {
                let cat = DB::text(r, "category").ok().flatten().unwrap_or_default();
                Ok((r.try_get(0)?, cat, r.try_get(2)?))
            })
            .collect()
    }

    pub async fn add_opt_out(
        &self,
        recipient: &str,
        keyword: Option<&str>,
        source: &str,
    ) -> Result<()> {
        sqlx::query(Self::q(DB::INSERT_OPT_OUT))
            .bind(recipient)
            .bind(keyword)
            .bind(source)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn opt_outs_like(&self, pattern: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(Self::q(OPT_OUTS_LIKE))
            .bind(pattern)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>(0)?))
            .collect()
    }

    /// Stores an incoming message unless one with its fingerprint is there (and
    /// its opt-out). True when stored now.
    async fn store_inbox_in(
        tx: &mut sqlx::Transaction<'static, DB>,
        m: &InboxMessage,
    ) -> Result<bool> {
        let fp = m.fingerprint();
        let there: i64 = sqlx::query(Self::q(INBOX_HAS))
            .bind(fp.as_str())
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
        if there > 0 {
            return Ok(false);
        }
        sqlx::query(Self::q(INSERT_INBOX))
            .bind(m.modem.as_str())
            .bind(m.sender.as_str())
            .bind(m.body.as_str())
            .bind(m.parts)
            .bind(m.missing_parts)
            .bind(Ts(m.received_at))
            .bind(m.opt_out)
            .bind(fp.as_str())
            .execute(&mut **tx)
            .await?;
        if m.opt_out {
            sqlx::query(Self::q(DB::INSERT_OPT_OUT))
                .bind(m.sender.as_str())
                .bind(Some(m.body.trim()))
                .bind("sms")
                .execute(&mut **tx)
                .await?;
        }
        Ok(true)
    }

    /// Stores an incoming message and, for an opt-out reply, the opt-out, in one
    /// transaction; false if it was already stored (same fingerprint).
    pub async fn insert_inbox(&self, m: &InboxMessage) -> Result<bool> {
        let mut tx = DB::begin_write(&self.pool).await?;
        let new = Self::store_inbox_in(&mut tx, m).await?;
        tx.commit().await?;
        Ok(new)
    }

    /// Keeps one part of a concatenated incoming message. When it is the last
    /// one, the whole message (`join`) goes into the inbox and the parts go away,
    /// in the same transaction: a crash leaves either the parts or the message.
    pub async fn add_fragment(
        &self,
        f: &Fragment,
        join: impl FnOnce(&[Fragment]) -> InboxMessage + Send,
    ) -> Result<FragmentOutcome> {
        let mut tx = DB::begin_write(&self.pool).await?;
        DB::lock_fragments(&mut tx, f).await?;
        let done: i64 = sqlx::query(Self::q(FRAGMENT_DONE))
            .bind(f.fingerprint())
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if done > 0 {
            tx.commit().await?;
            return Ok(FragmentOutcome::AlreadyStored);
        }
        sqlx::query(Self::q(DB::INSERT_FRAGMENT))
            .bind(f.modem.as_str())
            .bind(f.sender.as_str())
            .bind(f.concat_ref)
            .bind(f.total)
            .bind(f.seq)
            .bind(f.body.as_str())
            .bind(Ts(f.received_at))
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(Self::q(DB::FRAGMENTS_OF))
            .bind(f.modem.as_str())
            .bind(f.sender.as_str())
            .bind(f.concat_ref)
            .bind(f.total)
            .fetch_all(&mut *tx)
            .await?;
        if rows.len() < usize::try_from(f.total).unwrap_or(usize::MAX) {
            tx.commit().await?;
            return Ok(FragmentOutcome::Waiting);
        }
        let parts = rows
            .iter()
            .map(|r| {
                Ok(Fragment {
                    seq: r.try_get("seq")?,
                    body: r.try_get("body")?,
                    received_at: r.try_get::<Ts, _>("received_at")?.0,
                    ..f.clone()
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let message = join(&parts);
        let new = Self::store_inbox_in(&mut tx, &message).await?;
        Self::mark_done(&mut tx, &parts, message.received_at).await?;
        sqlx::query(Self::q(DELETE_FRAGMENTS_OF))
            .bind(f.modem.as_str())
            .bind(f.sender.as_str())
            .bind(f.concat_ref)
            .bind(f.total)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(FragmentOutcome::Stored { message, new })
    }

    async fn mark_done(
        tx: &mut sqlx::Transaction<'static, DB>,
        parts: &[Fragment],
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for p in parts {
            let fp = p.fingerprint();
            if seen.insert(fp.clone()) {
                let there: i64 = sqlx::query(Self::q(FRAGMENT_DONE))
                    .bind(fp.as_str())
                    .fetch_one(&mut **tx)
                    .await?
                    .try_get(0)?;
                if there == 0 {
                    sqlx::query(Self::q(INSERT_FRAGMENT_DONE))
                        .bind(fp.as_str())
                        .bind(Ts(at.max(Utc::now())))
                        .execute(&mut **tx)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Stores an incomplete message (its missing parts never came) and deletes
    /// its fragments by id, in one transaction.
    pub async fn store_incomplete(
        &self,
        ids: &[i64],
        parts: &[Fragment],
        m: &InboxMessage,
    ) -> Result<bool> {
        let mut tx = DB::begin_write(&self.pool).await?;
        let new = Self::store_inbox_in(&mut tx, m).await?;
        Self::mark_done(&mut tx, parts, m.received_at).await?;
        for id in ids {
            sqlx::query(Self::q(DELETE_FRAGMENT))
                .bind(*id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    pub async fn stale_fragments(&self, before: DateTime<Utc>) -> Result<Vec<(i64, Fragment)>> {
        let rows = sqlx::query(Self::q(STALE_FRAGMENTS))
            .bind(Ts(before))
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    Fragment {
                        modem: r.try_get("modem")?,
                        sender: r.try_get("sender")?,
                        concat_ref: r.try_get("concat_ref")?,
                        total: r.try_get("total")?,
                        seq: r.try_get("seq")?,
                        body: r.try_get("body")?,
                        received_at: r.try_get::<Ts, _>("received_at")?.0,
                    },
                ))
            })
            .collect()
    }

    pub async fn delete_fragment(&self, id: i64) -> Result<()> {
        sqlx::query(Self::q(DELETE_FRAGMENT))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets the fingerprints of parts reassembled before `before`.
    pub async fn forget_done_fragments(&self, before: DateTime<Utc>) -> Result<u64> {
        let r = sqlx::query(Self::q(FORGET_DONE_FRAGMENTS))
            .bind(Ts(before))
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&r))
    }

    /// Records a delivery report in one transaction: finds the part `same` says
    /// it belongs to among those sent by the modem with this reference since the
    /// window opened (newest first), updates it and the message's roll-up.
    pub async fn apply_report(
        &self,
        u: &ReportUpdate,
        same: impl Fn(&str) -> bool + Send,
    ) -> Result<Option<i64>> {
        let mut tx = DB::begin_write(&self.pool).await?;
        let rows = sqlx::query(Self::q(REPORT_CANDIDATES))
            .bind(u.modem.as_str())
            .bind(i32::from(u.mr))
            .bind(Ts(u.since))
            .fetch_all(&mut *tx)
            .await?;
        let mut hit = None;
        for r in &rows {
            let to: String = r.try_get(2)?;
            if same(&to) {
                hit = Some((r.try_get::<i64, _>(0)?, r.try_get::<i32, _>(1)?));
                break;
            }
        }
        let Some((id, seq)) = hit else {
            tx.commit().await?;
            return Ok(None);
        };
        sqlx::query(Self::q(UPDATE_PART))
            .bind(u.status.as_str())
            .bind(i32::from(u.tp_status))
            .bind(Ts(u.report_at))
            .bind(u.status.as_str())
            .bind(i32::from(u.tp_status))
            .bind(Ts(u.discharge_at))
            .bind(id)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        let parts = sqlx::query(Self::q(PART_STATUSES))
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((Delivery::parse(&r.try_get::<String, _>(0)?), r.try_get(1)?)))
            .collect::<Result<Vec<(Delivery, i32)>>>()?;
        let delivery = super::model::roll_up(&parts);
        let at = (delivery == Delivery::Delivered).then_some(Ts(u.discharge_at));
        sqlx::query(Self::q(SET_DELIVERY))
            .bind(delivery.as_str())
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    pub async fn parts_sent_since(&self, since: DateTime<Utc>) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(Self::q(PARTS_SENT_SINCE))
            .bind(Ts(since))
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    pub async fn recipient_counts_like(
        &self,
        pattern: &str,
        category: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(Self::q(RECIPIENT_COUNTS))
            .bind(Ts(since))
            .bind(pattern)
            .bind(Ts(since))
            .bind(pattern)
            .bind(category)
            .bind(category)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                let to = DB::text(r, "recipient").ok().flatten().unwrap_or_default();
                Ok((to, r.try_get(1)?))
            })
            .collect()
    }

    pub async fn expire_pending_delivery(&self, before: DateTime<Utc>) -> Result<u64> {
        sqlx::query(Self::q(EXPIRE_PARTS))
            .bind(Ts(before))
            .execute(&self.pool)
            .await?;
        let r = sqlx::query(Self::q(EXPIRE_OUTBOX))
            .bind(Ts(before))
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&r))
    }
}
