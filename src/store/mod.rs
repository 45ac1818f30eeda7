//! The store: the outbox (smsgw's public API: other systems INSERT rows and read
//! the outcome back), the parts sent per message, the inbox and the opt-out list,
//! on SQLite (embedded default), PostgreSQL or MySQL/MariaDB.
//!
//! - [`model`]: the domain without SQL: states and who moves them, what each
//!   outcome writes, delivery roll-up, settling a dead holder's rows.
//! - [`number`]: phone numbers compared in E.164 form.
//! - [`contract`]: the outbox contract's rules for rows other systems write.
//! - [`durability`]: whether the database's settings keep a commit through a
//!   power cut.
//! - `sql`: the backend contract ([`sql::Dialect`]) and every operation's SQL,
//!   written once for the three backends.
//! - `ts`: times in the database, one type for the three backends.
//! - `sqlite`, `postgres`, `mysql`: what each dialect does its own way (claims,
//!   inserts that ignore repeats, clocks, reading another system's values) and
//!   its migrations (`migrations/<backend>/`, embedded in the binary).
//!
//! Claims take a lease: a claimed row is `sending`, held by one owner until a time
//! on the database's clock. Every later write to it is guarded by "still `sending`
//! and held by me", so a late or restarted worker cannot overwrite a row that was
//! settled and reclaimed. Parts acknowledged by the network are recorded
//! unguarded: they are facts, and they must never be sent again.

pub mod contract;
pub mod durability;
pub mod model;
mod mysql;
pub mod number;
mod postgres;
pub mod sql;
mod sqlite;
pub mod ts;
pub mod watch;

pub use model::*;
pub use number::Numbering;
pub use sql::FragmentOutcome;
pub use ts::{parse_time, time_text};

use chrono::{DateTime, Utc};
use sql::Sql;
use sqlx::{MySql, Postgres, Sqlite};
use std::time::Duration;

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
    #[error("bad value in the database: {0}")]
    Time(String),
}

impl StoreError {
    /// The database may come back (restart, network blip, a lock or deadlock
    /// that a retry gets past): retry with backoff. Anything else (a constraint,
    /// a syntax error, a value the code cannot read) fails the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Database(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Protocol(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(d) => {
                    let code = d.code().unwrap_or_default();
                    // PostgreSQL: connection (08), insufficient resources (53),
                    // operator intervention (57: shutdown, restart), serialisation and
                    // deadlock (40). MySQL: deadlock/lock wait (40001, HY000 1205),
                    // server gone. SQLite: busy/locked (5, 6, 261, 517).
                    code.starts_with("08")
                        || code.starts_with("53")
                        || code.starts_with("57")
                        || code.starts_with("40")
                        || matches!(
                            code.as_ref(),
                            "5" | "6" | "261" | "517" | "1205" | "2006" | "2013"
                        )
                }
                _ => false,
            },
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The url with any password masked, for messages: the userinfo's, and a
/// `password=` or `sslpassword=` query parameter's.
pub fn redact_url(url: &str) -> String {
    let masked = redact_userinfo(url);
    let Some(q) = masked.find('?') else {
        return masked;
    };
    let params: Vec<String> = masked[q + 1..]
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.to_ascii_lowercase().ends_with("password") => format!("{k}=****"),
            _ => p.to_string(),
        })
        .collect();
    format!("{}?{}", &masked[..q], params.join("&"))
}

fn redact_userinfo(url: &str) -> String {
    let Some(s) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[s + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:****{}", &url[..s + 3], &rest[at..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Claim order: priority, then due time, then id.
pub(crate) fn claim_order(rows: &mut [Claimed]) {
    rows.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.due_at.cmp(&b.due_at))
            .then(a.id.cmp(&b.id))
    });
}

/// The database's half of "one live process per identity": a session that holds
/// the instance's lock for as long as it lives (a killed process's session ends,
/// and the lock with it). SQLite has none: the file lock in the state directory is it.
#[derive(Debug)]
pub enum InstanceLock {
    None,
    Postgres(sqlx::PgConnection),
    Mysql(sqlx::MySqlConnection),
}

impl InstanceLock {
    /// Whether the session (and so the lock) is still there.
    pub async fn alive(&mut self) -> bool {
        use sqlx::Connection;
        match self {
            InstanceLock::None => true,
            InstanceLock::Postgres(c) => c.ping().await.is_ok(),
            InstanceLock::Mysql(c) => c.ping().await.is_ok(),
        }
    }
}

/// One of the three backends.
#[derive(Debug, Clone)]
enum Db {
    Sqlite(Sql<Sqlite>),
    Postgres(Sql<Postgres>),
    Mysql(Sql<MySql>),
}

/// The store on one of the three backends: the operations the dispatcher, the
/// status socket and the command line use. One conformance suite
/// (`tests/it/store.rs`) runs it against all three.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    numbers: Numbering,
}

/// Calls the same operation on whichever backend this is.
macro_rules! on_db {
    ($self:ident . $m:ident ( $($a:expr),* )) => {
        match &$self.db {
            Db::Sqlite(s) => s.$m($($a),*).await,
            Db::Postgres(s) => s.$m($($a),*).await,
            Db::Mysql(s) => s.$m($($a),*).await,
        }
    };
}

fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::minutes(10))
}

/// SQLite's `synchronous` level for smsgw's connections (`[database]
/// sqlite_synchronous`). Only `full` and `extra` keep every commit through a
/// power cut in WAL mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    #[default]
    Full,
    Extra,
    Normal,
}

impl Store {
    /// Connects by url (`sqlite:///var/lib/smsgw/outbox/smsgw.db`, `postgres://...`, `mysql://...`).
    pub async fn connect(url: &str) -> Result<Store> {
        Store::connect_with(url, SqliteSync::Full).await
    }

    /// As [`Store::connect`], with SQLite's `synchronous` level.
    pub async fn connect_with(url: &str, sync: SqliteSync) -> Result<Store> {
        let db = if url.starts_with("sqlite:") {
            Db::Sqlite(Sql::<Sqlite>::connect(url, sync).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Db::Postgres(Sql::<Postgres>::connect(url).await?)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Db::Mysql(Sql::<MySql>::connect(url).await?)
        } else {
            return Err(StoreError::UnknownScheme(redact_url(url)));
        };
        Ok(Store {
            db,
            numbers: Numbering::default(),
        })
    }

    /// How numbers without a country code are read (`[numbers]`).
    pub fn with_numbering(mut self, n: Numbering) -> Store {
        self.numbers = n;
        self
    }

    pub fn numbering(&self) -> &Numbering {
        &self.numbers
    }

    pub fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
            Db::Mysql(_) => "mysql",
        }
    }

    /// Whether this database keeps a commit through a power cut.
    pub async fn durability(&self) -> Result<durability::Durability> {
        on_db!(self.durability())
    }

    /// Applies the embedded migrations that have not run yet (never drops anything).
    pub async fn migrate(&self) -> Result<()> {
        on_db!(self.migrate())
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<()> {
        on_db!(self.ping())
    }

    /// The database's clock.
    pub async fn db_now(&self) -> Result<DateTime<Utc>> {
        on_db!(self.db_now())
    }

    pub async fn enqueue(&self, m: &NewMessage) -> Result<Enqueued> {
        on_db!(self.enqueue(m))
    }

    /// Claims up to `limit` due rows, highest priority first, then earliest due,
    /// then oldest, leasing them to `owner` until `now + lease`. `now` is the
    /// database's clock (see [`Store::db_now`]).
    pub async fn claim(
        &self,
        owner: &str,
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claimed>> {
        let until = lease_end(now, lease);
        on_db!(self.claim(owner, limit, until, now, None))
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
        let until = lease_end(now, lease);
        let mut out = Vec::new();
        for c in categories {
            let left = limit.saturating_sub(out.len() as u32);
            if left == 0 {
                break;
            }
            // Usually nothing urgent is due: a read says so without a write. A
            // read that fails says nothing: the claim decides.
            if let Ok(false) = on_db!(self.due_in_category(c.as_str(), now)) {
                continue;
            }
            match on_db!(self.claim(owner, left, until, now, Some(c.as_str()))) {
                Ok(got) => out.extend(got),
                Err(e) if out.is_empty() => return Err(e),
                // The rows already claimed are committed and ours: they go to
                // the caller, not astray; the error shows again on the next pass.
                Err(e) => {
                    tracing::warn!(error = %e, category = %c.escape_debug(), "urgent claim failed");
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Marks which part is about to go on the wire (`None` after its outcome is
    /// known). If the holder dies meanwhile, settling holds the row as ambiguous.
    /// False when `owner` no longer holds the row.
    pub async fn set_inflight(
        &self,
        owner: &str,
        id: i64,
        seq: Option<i32>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool> {
        on_db!(self.set_inflight(owner, id, seq, lease_until))
    }

    /// Hands a claimed row to `modem` before its part `seq` goes on the wire: the
    /// marker, the modem, the message's parts and a renewed lease, so a restarted
    /// instance knows what was on which modem. False when `owner` no longer holds
    /// it: then nothing may be sent.
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
        on_db!(self.hand_over(owner, id, seq, modem, parts_total, lease_until, now))
    }

    /// Records an acknowledged part and moves the marker to `next` with a renewed
    /// lease, in one transaction. False when the row is no longer `owner`'s: the
    /// send must stop before the next part.
    pub async fn part_acknowledged(
        &self,
        owner: &str,
        id: i64,
        part: &PartRecord,
        next: Option<i32>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool> {
        on_db!(self.part_acknowledged(owner, id, part, next, lease_until))
    }

    /// Renews the leases of every row `owner` holds (a part may be on the wire
    /// for minutes); how many.
    pub async fn renew_leases(&self, owner: &str, lease_until: DateTime<Utc>) -> Result<u64> {
        on_db!(self.renew_leases(owner, lease_until))
    }

    /// Records a part the network accepted. Unguarded: it happened whoever holds
    /// the row now. Recording the same part twice is a no-op.
    pub async fn record_part(&self, id: i64, part: &PartRecord) -> Result<()> {
        on_db!(self.record_part(id, part))
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
        on_db!(self.complete(owner, id, &t, now))
    }

    /// Completes several claimed rows at once (sends that finished together),
    /// in one transaction: for each, `Ok(false)` when `owner` no longer held
    /// it. The outer error is a transient one (try the whole batch again);
    /// any other makes each row be written by itself, so that one outcome the
    /// database refuses does not keep the others unwritten.
    pub async fn complete_all(
        &self,
        owner: &str,
        done: &[(i64, Completion)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<bool>>> {
        let ts: Vec<(i64, Transition)> = done.iter().map(|(id, c)| (*id, c.transition())).collect();
        match on_db!(self.complete_all(owner, &ts, now)) {
            Ok(ours) => Ok(ours.into_iter().map(Ok).collect()),
            Err(e) if e.is_transient() || ts.len() < 2 => Err(e),
            Err(_) => {
                let mut each = Vec::with_capacity(ts.len());
                for (id, t) in &ts {
                    each.push(on_db!(self.complete(owner, *id, t, now)));
                }
                Ok(each)
            }
        }
    }

    /// Settles the rows a previous process with this identity left `sending`
    /// (run at start, before anything is dispatched): nothing on the wire -> queued
    /// again at once; every part recorded -> `sent`; a part on the wire ->
    /// `ambiguous` (a late `+CMGS` may still resolve it).
    pub async fn settle_predecessor(&self, owner: &str, now: DateTime<Utc>) -> Result<Rescued> {
        on_db!(self.settle(Some(owner), now))
    }

    /// Settles rows whose lease expired before `now` (their holder died, or
    /// another instance did), as [`Store::settle_predecessor`] does.
    pub async fn rescue_expired(&self, now: DateTime<Utc>) -> Result<Rescued> {
        on_db!(self.settle(None, now))
    }

    /// When the next lease (of any instance) expires, on the database's clock.
    pub async fn next_lease_expiry(&self) -> Result<Option<DateTime<Utc>>> {
        on_db!(self.next_lease_expiry())
    }

    pub async fn get(&self, id: i64) -> Result<Option<OutboxRow>> {
        on_db!(self.get(id))
    }

    /// The parts of a row with what their reports said.
    pub async fn part_reports(&self, id: i64) -> Result<Vec<PartReport>> {
        on_db!(self.part_reports(id))
    }

    /// Incoming messages after `after_id` stored in [`since`, `until`),
    /// oldest first.
    pub async fn inbox_after(
        &self,
        after_id: i64,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(i64, InboxMessage)>> {
        on_db!(self.inbox_after(after_id, since, until, limit))
    }

    /// Records an incoming call.
    pub async fn insert_call(&self, c: &Call) -> Result<()> {
        on_db!(self.insert_call(c))
    }

    /// Reports recorded after `after` on rows keyed `key_prefix…`, oldest first.
    pub async fn reports_after(
        &self,
        key_prefix: &str,
        after: ReportCursor,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<RecordedReport>> {
        on_db!(self.reports_after(key_prefix, after, until, limit))
    }

    /// A compatibility layer's cursor (value, part), if it has one.
    pub async fn cursor(&self, name: &str) -> Result<Option<(i64, i64)>> {
        on_db!(self.cursor(name))
    }

    /// Moves a compatibility layer's cursor forward to (value, part), never
    /// back.
    pub async fn set_cursor(&self, name: &str, value: i64, part: i64) -> Result<()> {
        on_db!(self.set_cursor(name, value, part))
    }

    /// Calls after `after_id`, oldest first.
    pub async fn calls_after(
        &self,
        after_id: i64,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(i64, Call)>> {
        on_db!(self.calls_after(after_id, until, limit))
    }

    /// The id of the incoming message with this fingerprint, if stored.
    pub async fn inbox_id(&self, fingerprint: &str) -> Result<Option<i64>> {
        on_db!(self.inbox_id(fingerprint))
    }

    /// The row queued with this dedupe key, if any.
    pub async fn by_dedupe_key(&self, key: &str) -> Result<Option<OutboxRow>> {
        on_db!(self.by_dedupe_key(key))
    }

    pub async fn parts(&self, id: i64) -> Result<Vec<PartRecord>> {
        on_db!(self.parts(id))
    }

    /// Rows per (state, category).
    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>> {
        on_db!(self.counts())
    }

    /// Messages to `recipient` in any of its forms, newest first (at most 20).
    pub async fn find_recipient(&self, recipient: &str) -> Result<Vec<OutboxRow>> {
        let Some(pattern) = number::like_pattern(recipient) else {
            return Ok(Vec::new());
        };
        let rows: Vec<OutboxRow> = on_db!(self.recipient_like(&pattern))?;
        Ok(rows
            .into_iter()
            .filter(|r| {
                r.recipient
                    .as_deref()
                    .is_some_and(|x| self.numbers.same(x, recipient))
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
        on_db!(self.operate(id, action, now))
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
        on_db!(self.resolve_sent(id, modem, parts_total, delivery, now))
    }

    /// Ambiguous messages whose part in doubt is on `modem`, newest first: what a
    /// late `+CMGS` from that modem can resolve.
    pub async fn doubts_on(&self, modem: &str) -> Result<Vec<Doubt>> {
        on_db!(self.doubts_on(modem))
    }

    /// Sent and delivered in the last hour, and the oldest due message.
    pub async fn activity(&self, now: DateTime<Utc>) -> Result<Activity> {
        on_db!(self.activity(now))
    }

    pub async fn add_opt_out(
        &self,
        recipient: &str,
        keyword: Option<&str>,
        source: &str,
    ) -> Result<()> {
        on_db!(self.add_opt_out(recipient, keyword, source))
    }

    /// Whether `recipient` opted out, in any of its forms (`+8613...` and `13...`).
    pub async fn is_opted_out(&self, recipient: &str) -> Result<bool> {
        let Some(pattern) = number::like_pattern(recipient) else {
            return Ok(false);
        };
        let found: Vec<String> = on_db!(self.opt_outs_like(&pattern))?;
        Ok(found.iter().any(|r| self.numbers.same(r, recipient)))
    }

    /// Stores an incoming message (and its opt-out) in one transaction; false if
    /// it was already stored (same fingerprint).
    pub async fn insert_inbox(&self, m: &InboxMessage) -> Result<bool> {
        on_db!(self.insert_inbox(m))
    }

    /// Keeps one part of a concatenated incoming message. When it is the last,
    /// `join` makes the whole message, which goes into the inbox (with its
    /// opt-out) as the parts are removed, in one transaction.
    pub async fn add_fragment(
        &self,
        f: &Fragment,
        join: impl FnOnce(&[Fragment]) -> InboxMessage + Send,
    ) -> Result<FragmentOutcome> {
        on_db!(self.add_fragment(f, join))
    }

    /// The incoming messages still missing parts whose newest part was stored
    /// before `before`: the network lost the rest. Nothing is removed here; see
    /// [`Store::store_incomplete`].
    pub async fn stale_fragments(&self, before: DateTime<Utc>) -> Result<Vec<StaleFragments>> {
        let rows: Vec<(i64, Fragment)> = on_db!(self.stale_fragments(before))?;
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

    /// Stores an incoming message whose other parts never came and removes the
    /// parts that did, in one transaction; false if it was already stored.
    pub async fn store_incomplete(&self, g: &StaleFragments, m: &InboxMessage) -> Result<bool> {
        on_db!(self.store_incomplete(&g.ids, &g.fragments, m))
    }

    /// Removes fragments by id.
    pub async fn delete_fragments(&self, ids: &[i64]) -> Result<()> {
        for id in ids {
            on_db!(self.delete_fragment(*id))?;
        }
        Ok(())
    }

    /// Forgets which parts were reassembled before `before` (they guard against
    /// a part read again after a crash; a week covers any restart).
    pub async fn forget_done_fragments(&self, before: DateTime<Utc>) -> Result<u64> {
        on_db!(self.forget_done_fragments(before))
    }

    /// Deletes everything (tests and benchmarks only).
    pub async fn truncate_all(&self) -> Result<()> {
        on_db!(self.truncate_all())
    }

    /// Records a delivery report: finds the part sent by `modem` with reference `mr`
    /// to `recipient` since `since` (references wrap at 255, so the newest match in the
    /// window wins; the forms of one number match), updates it, and recomputes the
    /// message's delivery, in one transaction. Returns the message id, if matched.
    pub async fn apply_report(&self, r: &ReportUpdate) -> Result<Option<i64>> {
        let numbers = self.numbers.clone();
        let to = r.recipient.clone();
        let same = move |x: &str| numbers.same(x, &to);
        on_db!(self.apply_report(r, same))
    }

    /// Parts sent per modem since `since` (daily limits survive restarts).
    pub async fn parts_sent_since(&self, since: DateTime<Utc>) -> Result<Vec<(String, i64)>> {
        on_db!(self.parts_sent_since(since))
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
        let Some(pattern) = number::like_pattern(recipient) else {
            return Ok(0);
        };
        let rows: Vec<(String, i64)> =
            on_db!(self.recipient_counts_like(&pattern, category.unwrap_or(""), since))?;
        Ok(rows
            .iter()
            .filter(|(r, _)| self.numbers.same(r, recipient))
            .map(|(_, n)| n)
            .sum())
    }

    /// Messages whose reports did not arrive before `sent_before`: delivery `unknown`.
    pub async fn expire_pending_delivery(&self, sent_before: DateTime<Utc>) -> Result<u64> {
        on_db!(self.expire_pending_delivery(sent_before))
    }

    /// Starts watching the outbox for changes (new rows above all) on every
    /// backend, so that pickup does not wait for a poll: see [`watch`].
    pub async fn watch(&self) -> Result<watch::Watch> {
        let source = match &self.db {
            Db::Postgres(s) => watch::Source::Postgres(s.listener().await?),
            // data_version counts other connections' commits: it needs a
            // connection of its own, taken out of the pool.
            Db::Sqlite(s) => watch::Source::Sqlite(s.read.acquire().await?.detach()),
            Db::Mysql(s) => watch::Source::Mysql(s.pool.clone()),
        };
        Ok(watch::Watch::start(source))
    }

    /// Takes the database lock of instance `id`; `None` when another live
    /// process holds it.
    pub async fn lock_instance(&self, id: &str) -> Result<Option<InstanceLock>> {
        Ok(match &self.db {
            Db::Sqlite(_) => Some(InstanceLock::None),
            Db::Postgres(s) => s.lock_instance(id).await?.map(InstanceLock::Postgres),
            Db::Mysql(s) => s.lock_instance(id).await?.map(InstanceLock::Mysql),
        })
    }

    /// Runs SQL as another system would (tests, and checking the integration guide's examples).
    pub async fn execute_raw(&self, sql: &str) -> Result<u64> {
        on_db!(self.execute_raw(sql))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            redact_url("postgres://u:p@ss@h/db?sslmode=verify-full&password=x&sslpassword=y"),
            "postgres://u:****@h/db?sslmode=verify-full&password=****&sslpassword=****"
        );
        // An @ in the query is not the userinfo's.
        assert_eq!(
            redact_url("postgres://u:pw@h/db?sslrootcert=/etc/a@b.crt"),
            "postgres://u:****@h/db?sslrootcert=/etc/a@b.crt"
        );
    }
}
