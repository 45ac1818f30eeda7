//! Pickup without waiting for a poll: a cheap "the outbox may have changed"
//! signal on every backend, so an inserted row reaches a modem in milliseconds
//! instead of at the next `[sending] poll_secs`.
//!
//! - PostgreSQL: the insert trigger's `NOTIFY smsgw_outbox` (LISTEN).
//! - SQLite: `PRAGMA data_version` on a connection of its own, every
//!   [`SQLITE_EVERY`]. It changes when any other connection commits a change to
//!   the file (another process's INSERT included) and reads no table: a few
//!   microseconds.
//! - MariaDB/MySQL: a watermark, the outbox's highest id (the primary key's last
//!   entry), every [`MYSQL_EVERY`].
//!
//! The signal is a hint that wakes the dispatcher; it never carries data, so a
//! lost or spurious one costs at most a poll interval or one empty claim. The
//! watching runs in a task of its own and signals through a [`Notify`], so
//! the dispatcher's `select!` never cancels a query half-way.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::warn;

/// How often SQLite's `data_version` is read.
pub const SQLITE_EVERY: Duration = Duration::from_millis(50);
/// How often MariaDB's watermark is read.
pub const MYSQL_EVERY: Duration = Duration::from_millis(100);
/// After a failed read (the database is away), before the next one.
const AFTER_ERROR: Duration = Duration::from_secs(1);

/// What is watched, per backend.
pub(crate) enum Source {
    Postgres(sqlx::postgres::PgListener),
    Sqlite(sqlx::sqlite::SqliteConnection),
    Mysql(sqlx::MySqlPool),
}

/// A running watch: [`Watch::changed`] returns after the outbox may have
/// changed. Dropping it stops the watching task.
pub struct Watch {
    signal: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    pub(crate) fn start(source: Source) -> Watch {
        let signal = Arc::new(Notify::new());
        let task = tokio::spawn(run(source, signal.clone()));
        Watch { signal, task }
    }

    /// Returns once something changed since the last return (a change that came
    /// while nobody waited is kept, not lost). Cancel-safe.
    pub async fn changed(&self) {
        self.signal.notified().await
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the source forever; signals on each change. Errors are logged once per
/// outage and retried: the periodic poll covers the gap.
async fn run(source: Source, signal: Arc<Notify>) {
    let mut failing = false;
    let mut failed = |e: Option<sqlx::Error>| match e {
        None => failing = false,
        Some(e) => {
            if !failing {
                warn!(error = %e, "cannot watch the outbox for new rows; polling meanwhile");
            }
            failing = true;
        }
    };
    let mut polled = match source {
        Source::Postgres(mut l) => loop {
            match l.recv().await {
                Ok(_) => {
                    failed(None);
                    signal.notify_one();
                }
                Err(e) => {
                    failed(Some(e));
                    tokio::time::sleep(AFTER_ERROR).await;
                }
            }
        },
        Source::Sqlite(conn) => Polled::Sqlite(conn),
        Source::Mysql(pool) => Polled::Mysql(pool),
    };
    let mut last: Option<i64> = None;
    loop {
        tokio::time::sleep(polled.every()).await;
        match polled.read().await {
            Ok(v) => {
                failed(None);
                if last.replace(v).is_some_and(|p| p != v) {
                    signal.notify_one();
                }
            }
            Err(e) => {
                failed(Some(e));
                tokio::time::sleep(AFTER_ERROR).await;
            }
        }
    }
}

/// The sources that are read at an interval: a number that changes with the outbox.
enum Polled {
    Sqlite(sqlx::sqlite::SqliteConnection),
    Mysql(sqlx::MySqlPool),
}

impl Polled {
    fn every(&self) -> Duration {
        match self {
            Polled::Sqlite(_) => SQLITE_EVERY,
            Polled::Mysql(_) => MYSQL_EVERY,
        }
    }

    async fn read(&mut self) -> Result<i64, sqlx::Error> {
        match self {
            Polled::Sqlite(conn) => {
                sqlx::query_scalar("PRAGMA data_version")
                    .fetch_one(&mut *conn)
                    .await
            }
            Polled::Mysql(pool) => {
                sqlx::query_scalar("SELECT CAST(COALESCE(MAX(id), 0) AS SIGNED) FROM outbox")
                    .fetch_one(&*pool)
                    .await
            }
        }
    }
}
