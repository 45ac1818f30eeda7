//! MySQL 8 / MariaDB 10.6+ backend. Neither has `UPDATE ... RETURNING` nor
//! `IN (SELECT ... LIMIT)`, so a claim selects `FOR UPDATE SKIP LOCKED` and updates
//! the picked ids in one transaction. Sessions run in UTC (`time_zone = '+00:00'`,
//! sqlx's default), and tables are utf8mb4 so Chinese text and emoji survive.
//!
//! A permissive `sql_mode` lets other systems write zero dates (`'0000-00-00'`,
//! `'2026-00-00'`): they are read as errors for their row (never a panic), and
//! refused at insert by migration 0005.

use super::model::{Claimed, Enqueued, Fragment, NewMessage};
use super::sql::{Dialect, Sql, CLAIMED};
use super::ts::Ts;
use super::{Result, StoreError};
use chrono::{DateTime, Utc};
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{Decode, QueryBuilder, Row, ValueRef};
use std::str::FromStr;
use std::time::Duration;

impl Dialect for MySql {
    const NAME: &'static str = "mysql";
    const NUMBERED: bool = false;
    const NOW: &'static str = "SELECT UTC_TIMESTAMP(6)";
    const INSERT_PART: &'static str = "INSERT INTO outbox_parts (outbox_id, seq, total, modem, recipient, mr, submitted_at, status)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE id = id";
    const INSERT_OPT_OUT: &'static str =
        "INSERT INTO opt_outs (recipient, keyword, source) VALUES (?, ?, ?)
         ON DUPLICATE KEY UPDATE recipient = recipient";
    const INSERT_FRAGMENT: &'static str =
        "INSERT INTO inbox_fragments (modem, sender, concat_ref, total, seq, body, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE id = id";
    // Locks the message's fragments: a concurrent part waits, then sees them all.
    const FRAGMENTS_OF: &'static str = "SELECT seq, body, received_at FROM inbox_fragments
         WHERE modem = ? AND sender = ? AND concat_ref = ? AND total = ? ORDER BY seq FOR UPDATE";
    const OLDEST_DUE: &'static str =
        "SELECT id, due_at FROM outbox WHERE claimable = 1 AND due_at <= ?
         ORDER BY due_at, id LIMIT 1";
    const DUE_IN_CATEGORY: &'static str = "SELECT 1 FROM outbox
         WHERE claimable = 1 AND category = ? AND due_at <= ? LIMIT 1";

    const SETTINGS: &'static str =
        "SELECT 'innodb_flush_log_at_trx_commit', CAST(@@innodb_flush_log_at_trx_commit AS CHAR)
         UNION ALL SELECT 'log_bin', CAST(@@log_bin AS CHAR)
         UNION ALL SELECT 'sync_binlog', CAST(@@sync_binlog AS CHAR)
         UNION ALL SELECT 'innodb_doublewrite', CAST(@@innodb_doublewrite AS CHAR)
         UNION ALL SELECT 'outbox_engine', ENGINE FROM information_schema.TABLES
                   WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'outbox'";

    fn rows_affected(r: &Self::QueryResult) -> u64 {
        r.rows_affected()
    }

    async fn begin_write(pool: &MySqlPool) -> Result<sqlx::Transaction<'static, MySql>> {
        Ok(pool.begin().await?)
    }

    async fn lock_fragments<'a>(
        _tx: &'a mut sqlx::Transaction<'static, MySql>,
        _f: &'a Fragment,
    ) -> Result<()> {
        Ok(())
    }

    fn text(row: &MySqlRow, col: &str) -> std::result::Result<Option<String>, String> {
        row.try_get::<Option<String>, _>(col)
            .map_err(|e| e.to_string())
    }

    fn int(row: &MySqlRow, col: &str) -> std::result::Result<Option<i64>, String> {
        row.try_get::<Option<i64>, _>(col)
            .or_else(|_| row.try_get::<Option<i32>, _>(col).map(|v| v.map(i64::from)))
            .map_err(|e| e.to_string())
    }

    fn flag(row: &MySqlRow, col: &str) -> std::result::Result<bool, String> {
        row.try_get::<bool, _>(col).map_err(|e| e.to_string())
    }

    fn time(row: &MySqlRow, col: &str) -> std::result::Result<Option<DateTime<Utc>>, String> {
        let v = row.try_get_raw(col).map_err(|e| e.to_string())?;
        if v.is_null() {
            return Ok(None);
        }
        <Ts as Decode<MySql>>::decode(v)
            .map(|t| Some(t.0))
            .map_err(|e| e.to_string())
    }
}

impl Sql<MySql> {
    pub async fn connect(url: &str) -> Result<Sql<MySql>> {
        let err = |source| StoreError::Connect {
            backend: "mysql",
            target: super::redact_url(url),
            source,
        };
        let url = url.replacen("mariadb://", "mysql://", 1);
        let opts = MySqlConnectOptions::from_str(&url)
            .map_err(err)?
            .charset("utf8mb4")
            .timezone(Some("+00:00".to_string()));
        let pool = MySqlPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(err)?;
        Ok(Sql {
            read: pool.clone(),
            pool,
        })
    }

    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("migrations/mysql")
            .run(&self.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                backend: "mysql",
                source,
            })
    }

    pub async fn enqueue(&self, m: &NewMessage) -> Result<Enqueued> {
        let r = sqlx::query(
            "INSERT INTO outbox (recipient, body, category, priority, send_at, expires_at, dedupe_key, modem_group,
                                 request_report, flash, external_ref)
             VALUES (?, ?, COALESCE(?, 'notice'), ?, ?, ?, ?, ?, ?, ?, ?)",
        )
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
        .execute(&self.pool)
        .await;
        match r {
            Ok(done) => Ok(Enqueued {
                id: done.last_insert_id() as i64,
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

    /// Claims due rows. InnoDB may pick a claimer as a deadlock victim when several
    /// claim at once (SKIP LOCKED skips row locks, not every gap lock): the whole
    /// transaction rolled back, so it is simply tried again.
    pub async fn claim(
        &self,
        owner: &str,
        limit: u32,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        only: Option<&str>,
    ) -> Result<Vec<Claimed>> {
        let mut attempt = 0;
        loop {
            match self.claim_once(owner, limit, until, now, only).await {
                Err(e) if attempt < 4 && is_deadlock(&e) => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(5 * attempt)).await;
                }
                r => return r,
            }
        }
    }

    async fn claim_once(
        &self,
        owner: &str,
        limit: u32,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        only: Option<&str>,
    ) -> Result<Vec<Claimed>> {
        let mut tx = self.pool.begin().await?;
        // The category filter only when asked: the plain claim keeps its plan.
        let filter = if only.is_none() {
            ""
        } else {
            " AND category = ?"
        };
        let sql = format!(
            "SELECT id FROM outbox WHERE claimable = 1 AND due_at <= ?{filter}
             ORDER BY priority DESC, due_at, id LIMIT ? FOR UPDATE SKIP LOCKED"
        );
        let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(Ts(now));
        if let Some(c) = only {
            q = q.bind(c);
        }
        let ids: Vec<i64> = q.bind(i64::from(limit)).fetch_all(&mut *tx).await?;
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let in_list = |q: &mut QueryBuilder<MySql>| {
            let mut sep = q.separated(", ");
            for id in &ids {
                sep.push_bind(*id);
            }
            q.push(")");
        };
        let mut q =
            QueryBuilder::<MySql>::new("UPDATE outbox SET state = 'sending', lease_owner = ");
        q.push_bind(owner)
            .push(", lease_until = ")
            .push_bind(Ts(until))
            .push(", updated_at = ")
            .push_bind(Ts(now))
            .push(", inflight_part = NULL WHERE id IN (");
        in_list(&mut q);
        q.build().execute(&mut *tx).await?;
        let mut q =
            QueryBuilder::<MySql>::new(format!("SELECT {CLAIMED} FROM outbox WHERE id IN ("));
        in_list(&mut q);
        let rows = q.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let mut out = rows.iter().map(Self::claimed).collect::<Result<Vec<_>>>()?;
        super::claim_order(&mut out);
        self.fill_parts_done(&mut out).await?;
        Ok(out)
    }

    /// Takes the named lock of instance `id` on a connection of its own, held as
    /// long as the connection lives; `None` if another session holds it.
    pub async fn lock_instance(&self, id: &str) -> Result<Option<sqlx::MySqlConnection>> {
        use sqlx::Connection;
        let mut conn = sqlx::MySqlConnection::connect_with(&self.pool.connect_options()).await?;
        // Lock names are at most 64 characters: a hash of the identity.
        let name = format!("smsgw-{:016x}", fnv(id));
        let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
        Ok((got == Some(1)).then_some(conn))
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

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// InnoDB's "deadlock found" (SQLSTATE 40001, error 1213): the transaction was
/// rolled back and may be retried as a whole.
fn is_deadlock(e: &StoreError) -> bool {
    match e {
        StoreError::Database(sqlx::Error::Database(d)) => d.code().as_deref() == Some("40001"),
        _ => false,
    }
}
