//! SQLite backend: the embedded default. WAL mode so readers (other systems
//! polling their rows) never block the daemon; a busy timeout so a writer waits for
//! the lock instead of failing with "database is locked"; multi-statement writes
//! take the write lock up front (`BEGIN IMMEDIATE`), so they never deadlock.
//!
//! SQLite stores whatever a column is given (a BLOB body, `'high'` as a
//! priority, a number as a time): another system's values are read by their
//! actual storage class, and one smsgw cannot use is named, for its row alone.

use super::model::{Claimed, Enqueued, Fragment, NewMessage};
use super::sql::{Dialect, Sql, CLAIMED};
use super::ts::{self, Ts};
use super::{Result, StoreError};
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Decode, Row, Sqlite, TypeInfo, ValueRef};
use std::str::FromStr;
use std::time::Duration;

/// The claim: one statement (SQLite has a single writer, so the subquery and the
/// update see the same rows and no other claimer can interleave); with `only`,
/// of one category.
pub(crate) fn claim_sql(only: bool) -> String {
    let filter = if only { " AND category = ?" } else { "" };
    format!(
        "UPDATE outbox SET state = 'sending', lease_owner = ?, lease_until = ?, updated_at = ?, inflight_part = NULL
         WHERE id IN (SELECT id FROM outbox WHERE state IN ('queued', 'retrying') AND due_at <= ?{filter}
                      ORDER BY priority DESC, due_at, id LIMIT ?)
         RETURNING {CLAIMED}"
    )
}

const ENQUEUE: &str = "INSERT INTO outbox (recipient, body, category, priority, send_at, expires_at, dedupe_key, modem_group,
                         request_report, flash, external_ref)
     VALUES (?, ?, COALESCE(?, 'notice'), ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id";

impl Dialect for Sqlite {
    const NAME: &'static str = "sqlite";
    const NUMBERED: bool = false;
    const NOW: &'static str = "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')";
    const INSERT_PART: &'static str = "INSERT INTO outbox_parts (outbox_id, seq, total, modem, recipient, mr, submitted_at, status)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (outbox_id, seq) DO NOTHING";
    const INSERT_OPT_OUT: &'static str =
        "INSERT INTO opt_outs (recipient, keyword, source) VALUES (?, ?, ?)
         ON CONFLICT (recipient) DO NOTHING";
    const INSERT_FRAGMENT: &'static str =
        "INSERT INTO inbox_fragments (modem, sender, concat_ref, total, seq, body, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING";
    const FRAGMENTS_OF: &'static str = "SELECT seq, body, received_at FROM inbox_fragments
         WHERE modem = ? AND sender = ? AND concat_ref = ? AND total = ? ORDER BY seq";
    const OLDEST_DUE: &'static str =
        "SELECT id, due_at FROM outbox WHERE state IN ('queued', 'retrying') AND due_at <= ?
         ORDER BY due_at, id LIMIT 1";
    const DUE_IN_CATEGORY: &'static str = "SELECT 1 FROM outbox
         WHERE state IN ('queued', 'retrying') AND category = ? AND due_at <= ? LIMIT 1";

    const SETTINGS: &'static str = "SELECT 'journal_mode', journal_mode FROM pragma_journal_mode
         UNION ALL SELECT 'synchronous', CAST(synchronous AS TEXT) FROM pragma_synchronous";

    fn rows_affected(r: &Self::QueryResult) -> u64 {
        r.rows_affected()
    }

    async fn begin_write(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, Sqlite>> {
        Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn lock_fragments<'a>(
        _tx: &'a mut sqlx::Transaction<'static, Sqlite>,
        _f: &'a Fragment,
    ) -> Result<()> {
        // BEGIN IMMEDIATE holds the database's only write lock.
        Ok(())
    }

    fn text(row: &SqliteRow, col: &str) -> std::result::Result<Option<String>, String> {
        let v = row.try_get_raw(col).map_err(|e| e.to_string())?;
        // A NULL reports its column's declared type: ask first.
        let kind = if v.is_null() {
            "NULL".to_string()
        } else {
            v.type_info().name().to_string()
        };
        match kind.as_str() {
            "NULL" => Ok(None),
            "TEXT" => <String as Decode<Sqlite>>::decode(v)
                .map(Some)
                .map_err(|_| "is text that is not valid UTF-8 (another character set?)".into()),
            "BLOB" => {
                let bytes = <Vec<u8> as Decode<Sqlite>>::decode(v).map_err(|e| e.to_string())?;
                // A BLOB that holds UTF-8 text is read as that text.
                String::from_utf8(bytes).map(Some).map_err(|e| {
                    format!(
                        "is a BLOB of {} bytes that is not UTF-8 text",
                        e.as_bytes().len()
                    )
                })
            }
            "INTEGER" => <i64 as Decode<Sqlite>>::decode(v)
                .map(|n| Some(n.to_string()))
                .map_err(|e| e.to_string()),
            _ => <f64 as Decode<Sqlite>>::decode(v)
                .map(|n| Some(n.to_string()))
                .map_err(|e| e.to_string()),
        }
    }

    fn int(row: &SqliteRow, col: &str) -> std::result::Result<Option<i64>, String> {
        let v = row.try_get_raw(col).map_err(|e| e.to_string())?;
        // A NULL reports its column's declared type: ask first.
        let kind = if v.is_null() {
            "NULL".to_string()
        } else {
            v.type_info().name().to_string()
        };
        match kind.as_str() {
            "NULL" => Ok(None),
            "INTEGER" => <i64 as Decode<Sqlite>>::decode(v)
                .map(Some)
                .map_err(|e| e.to_string()),
            "TEXT" => {
                let s = <String as Decode<Sqlite>>::decode(v).unwrap_or_default();
                Err(format!("{} is text, not an integer", clip(&s, 40)))
            }
            "REAL" => {
                let f = <f64 as Decode<Sqlite>>::decode(v).unwrap_or_default();
                Err(format!("{f} is not an integer"))
            }
            other => Err(format!("a {other} value is not an integer")),
        }
    }

    fn flag(row: &SqliteRow, col: &str) -> std::result::Result<bool, String> {
        match Self::int(row, col)? {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(n) => Err(format!("{n} is not 0 or 1")),
            None => Err("is NULL, not 0 or 1".into()),
        }
    }

    fn time(row: &SqliteRow, col: &str) -> std::result::Result<Option<DateTime<Utc>>, String> {
        let v = row.try_get_raw(col).map_err(|e| e.to_string())?;
        // A NULL reports its column's declared type: ask first.
        let kind = if v.is_null() {
            "NULL".to_string()
        } else {
            v.type_info().name().to_string()
        };
        match kind.as_str() {
            "NULL" => Ok(None),
            "TEXT" => {
                let s = <String as Decode<Sqlite>>::decode(v)
                    .map_err(|_| "is text that is not valid UTF-8".to_string())?;
                ts::parse_time(&s).map(Some).ok_or_else(|| {
                    format!(
                        "{} is not a UTC time (YYYY-MM-DD HH:MM:SS)",
                        clip(&format!("{s:?}"), 40)
                    )
                })
            }
            "INTEGER" | "REAL" => {
                let n = <f64 as Decode<Sqlite>>::decode(v).unwrap_or_default();
                Err(format!(
                    "{n} is a number, not a time: write UTC text YYYY-MM-DD HH:MM:SS"
                ))
            }
            other => Err(format!("a {other} value is not a time")),
        }
    }
}

/// At most `n` characters of `s`, marked when cut (reasons must stay readable).
pub(crate) fn clip(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        s.to_string()
    } else {
        format!(
            "{}… ({count} characters)",
            s.chars().take(n).collect::<String>()
        )
    }
}

/// Creates a missing database file readable and writable by its group
/// (0660, less the umask), instead of SQLite's 0644: where the directory gives
/// the group (the package's setgid `outbox/`, group smsgw-outbox), local
/// writers can INSERT. SQLite gives its -wal and -shm files the database's
/// own mode. An existing file is left as the administrator made it; a symbolic
/// link in its place (or in a -wal, -shm or -journal file's) is refused.
/// Syncs the directory that names the database. A directory the daemon may
/// not read (mode 0711, another system's) cannot be synced: said, not fatal.
fn sync_names(path: &std::path::Path) {
    if let Err(e) = crate::durable::sync_parent(path) {
        tracing::warn!(database = %path.display(), error = %e,
            "cannot sync the database's directory: a power cut right after the database or its WAL was created may lose them");
    }
}

fn is_memory(path: &std::path::Path) -> bool {
    path.as_os_str().is_empty() || path.to_string_lossy().starts_with(':')
}

fn create_shareable(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if is_memory(path) {
        return Ok(());
    }
    // The directory may be shared with the outbox writers: a symbolic link
    // planted there must not make SQLite write the daemon's pages elsewhere.
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = std::path::PathBuf::from(p);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(std::io::Error::other(format!(
                "{} is a symbolic link: the database and its -wal, -shm and -journal files must be plain files",
                p.display()
            )));
        }
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o660)
        .open(path)
    {
        Ok(_) => {
            sync_names(path);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

impl Sql<Sqlite> {
    pub async fn connect(url: &str, sync: super::SqliteSync) -> Result<Sql<Sqlite>> {
        let err = |source| StoreError::Connect {
            backend: "sqlite",
            target: url.to_string(),
            source,
        };
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: the write-ahead log is synced at every commit, so a commit
            // the daemon acted on (a part marked in flight, then sent) is
            // still there after a power cut. NORMAL would sync it only at a
            // checkpoint: the last commits lost, their parts sent again.
            .synchronous(match sync {
                super::SqliteSync::Full => SqliteSynchronous::Full,
                super::SqliteSync::Extra => SqliteSynchronous::Extra,
                super::SqliteSync::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(15))
            .foreign_keys(true);
        if let Some(dir) = opts
            .get_filename()
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            crate::durable::create_dir_all(dir).map_err(|e| err(sqlx::Error::Io(e)))?;
        }
        create_shareable(opts.get_filename()).map_err(|e| err(sqlx::Error::Io(e)))?;
        // One writer (see `Sql::read`): it connects first, so the file and
        // its WAL exist before the readers open them read-only.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await
            .map_err(err)?;
        // The database file and its WAL now exist: their names reach the
        // disk with their directory (SQLite syncs the data, not every name).
        if !is_memory(opts.get_filename()) {
            sync_names(opts.get_filename());
        }
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.create_if_missing(false).read_only(true))
            .await
            .map_err(err)?;
        Ok(Sql { pool, read })
    }

    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("migrations/sqlite")
            .run(&self.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                backend: "sqlite",
                source,
            })
    }

    pub async fn enqueue(&self, m: &NewMessage) -> Result<Enqueued> {
        let r = sqlx::query(ENQUEUE)
            .bind(m.recipient.as_deref())
            .bind(m.body.as_deref())
            .bind(m.category.as_deref())
            .bind(m.priority)
            .bind(m.send_at.map(Ts))
            .bind(m.expires_at.map(Ts))
            .bind(m.dedupe_key.as_deref())
            .bind(m.modem_group.as_deref())
            .bind(m.request_report)
            .bind(m.flash)
            .bind(m.external_ref.as_deref())
            .fetch_one(&self.pool)
            .await;
        match r {
            Ok(row) => Ok(Enqueued {
                id: row.try_get(0)?,
                duplicate: false,
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                let id = sqlx::query_scalar("SELECT id FROM outbox WHERE dedupe_key = ?")
                    .bind(m.dedupe_key.as_deref())
                    .fetch_one(&self.pool)
                    .await?;
                Ok(Enqueued {
                    id,
                    duplicate: true,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn claim(
        &self,
        owner: &str,
        limit: u32,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        only: Option<&str>,
    ) -> Result<Vec<Claimed>> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(claim_sql(only.is_some())))
            .bind(owner)
            .bind(Ts(until))
            .bind(Ts(now))
            .bind(Ts(now));
        if let Some(c) = only {
            q = q.bind(c);
        }
        let rows = q.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        let mut out = rows.iter().map(Self::claimed).collect::<Result<Vec<_>>>()?;
        super::claim_order(&mut out);
        self.fill_parts_done(&mut out).await?;
        Ok(out)
    }

    pub async fn truncate_all(&self) -> Result<()> {
        for t in [
            "outbox_parts",
            "outbox",
            "inbox",
            "inbox_fragments",
            "inbox_fragments_done",
            "opt_outs",
            "calls",
            "compat_cursors",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {t}")))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod plans {
    //! Without statistics SQLite picks indexes by their shape alone: a new index
    //! can lure a recurring query away from the one made for it and into a walk
    //! of the whole history (seen: the report timeout through the sent_at index,
    //! 6 to 26 s over 1M rows; the claim through a state index, sorting the
    //! backlog). Each query's plan must name its index and sort nothing big.
    use super::super::sql::{COUNTS, EXPIRE_OUTBOX, EXPIRE_PARTS, RECIPIENT_COUNTS};
    use super::*;

    async fn plan(s: &Sql<Sqlite>, sql: &str) -> String {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .fetch_all(&s.pool)
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.try_get::<String, _>(3).unwrap())
            .collect::<Vec<_>>()
            .join(" | ")
    }

    #[tokio::test]
    async fn recurring_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sql::<Sqlite>::connect(
            &format!("sqlite://{}/p.db", dir.path().display()),
            crate::store::SqliteSync::Full,
        )
        .await
        .unwrap();
        s.migrate().await.unwrap();
        for (what, sql, index) in [
            ("claim", claim_sql(false), "INDEX outbox_claim"),
            (
                "urgent claim",
                claim_sql(true),
                "INDEX outbox_claim_category",
            ),
            (
                "per-recipient count",
                RECIPIENT_COUNTS.into(),
                "INDEX outbox_sent_recipient",
            ),
            (
                "report timeout (parts)",
                EXPIRE_PARTS.into(),
                "INDEX parts_pending",
            ),
            (
                "report timeout",
                EXPIRE_OUTBOX.into(),
                "INDEX outbox_delivery_pending",
            ),
            (
                "urgent due check",
                Sqlite::DUE_IN_CATEGORY.into(),
                "INDEX outbox_claim_category",
            ),
            ("counts", COUNTS.into(), "INDEX outbox_state_category"),
        ] {
            let p = plan(&s, &sql).await;
            assert!(p.contains(index), "{what}: {p}");
            assert!(
                !p.contains("FOR ORDER BY") || what == "counts",
                "{what} sorts: {p}"
            );
            assert!(
                !p.split(" | ")
                    .any(|step| step == "SCAN outbox" || step == "SCAN outbox_parts"),
                "{what} reads the whole table: {p}"
            );
        }
    }
}

#[cfg(test)]
mod pools {
    use super::*;

    /// The daemon's writes go through one connection, so they queue in the
    /// process instead of in SQLite's busy handler; the readers beside it are
    /// read-only (a write sent to them by mistake fails, it is never a
    /// second writer) and see each commit of the writer's at once.
    #[tokio::test]
    async fn one_writer_and_read_only_readers() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let s = Sql::<Sqlite>::connect(&url, crate::store::SqliteSync::Full)
            .await
            .unwrap();
        s.migrate().await.unwrap();
        assert_eq!(s.pool.options().get_max_connections(), 1);
        let e = sqlx::query("DELETE FROM opt_outs")
            .execute(&s.read)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("readonly"), "{e}");
        sqlx::query("INSERT INTO opt_outs (recipient, keyword, source) VALUES ('1', 'TD', 'test')")
            .execute(&s.pool)
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM opt_outs")
            .fetch_one(&s.read)
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
}
