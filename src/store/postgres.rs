//! PostgreSQL backend: for sites where other systems share the database and
//! several smsgw instances share one outbox. Claims skip rows another claimer has
//! locked (`FOR UPDATE SKIP LOCKED`), so instances never wait on or double-claim
//! each other; an insert trigger notifies `smsgw_outbox` so pickup is immediate.
//!
//! Its types admit `infinity` and dates beyond chrono's range in a
//! `TIMESTAMPTZ`: those are read without sqlx's decoder (which panics on them),
//! and refused at insert by migration 0005.

use super::model::{Claimed, Enqueued, Fragment, NewMessage};
use super::sql::{Dialect, Sql, CLAIMED};
use super::ts::Ts;
use super::{Result, StoreError};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Decode, Postgres, Row, ValueRef};
use std::str::FromStr;
use std::time::Duration;

/// The channel the insert trigger notifies.
pub const CHANNEL: &str = "smsgw_outbox";

impl Dialect for Postgres {
    const NAME: &'static str = "postgres";
    const NUMBERED: bool = true;
    const NOW: &'static str = "SELECT now()";
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

    const SETTINGS: &'static str = "SELECT name, setting FROM pg_settings
         WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes') ORDER BY name";

    fn rows_affected(r: &Self::QueryResult) -> u64 {
        r.rows_affected()
    }

    async fn begin_write(pool: &PgPool) -> Result<sqlx::Transaction<'static, Postgres>> {
        Ok(pool.begin().await?)
    }

    async fn lock_fragments<'a>(
        tx: &'a mut sqlx::Transaction<'static, Postgres>,
        f: &'a Fragment,
    ) -> Result<()> {
        // Two parts of one message arriving at once must not both see an
        // incomplete set.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2 || '/' || $3::text))")
            .bind(f.modem.as_str())
            .bind(f.sender.as_str())
            .bind(f.concat_ref)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    fn text(row: &PgRow, col: &str) -> std::result::Result<Option<String>, String> {
        row.try_get::<Option<String>, _>(col)
            .map_err(|e| e.to_string())
    }

    fn int(row: &PgRow, col: &str) -> std::result::Result<Option<i64>, String> {
        row.try_get::<Option<i32>, _>(col)
            .map(|v| v.map(i64::from))
            .map_err(|e| e.to_string())
    }

    fn flag(row: &PgRow, col: &str) -> std::result::Result<bool, String> {
        row.try_get::<bool, _>(col).map_err(|e| e.to_string())
    }

    fn time(row: &PgRow, col: &str) -> std::result::Result<Option<DateTime<Utc>>, String> {
        let v = row.try_get_raw(col).map_err(|e| e.to_string())?;
        if v.is_null() {
            return Ok(None);
        }
        <Ts as Decode<Postgres>>::decode(v)
            .map(|t| Some(t.0))
            .map_err(|e| e.to_string())
    }
}

impl Sql<Postgres> {
    pub async fn connect(url: &str) -> Result<Sql<Postgres>> {
        let err = |source| StoreError::Connect {
            backend: "postgres",
            target: super::redact_url(url),
            source,
        };
        // UTC sessions: times written as text by other tools read the same everywhere.
        let opts = PgConnectOptions::from_str(url)
            .map_err(err)?
            .options([("timezone", "UTC")]);
        let pool = PgPoolOptions::new()
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

    /// A listener on the insert notifications. It reconnects by itself but drops
    /// notifications sent while disconnected: callers keep a periodic poll.
    pub async fn listener(&self) -> Result<PgListener> {
        let mut l = PgListener::connect_with(&self.pool).await?;
        l.listen(CHANNEL).await?;
        Ok(l)
    }

    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                backend: "postgres",
                source,
            })
    }

    pub async fn enqueue(&self, m: &NewMessage) -> Result<Enqueued> {
        let r = sqlx::query(
            "INSERT INTO outbox (recipient, body, category, priority, send_at, expires_at, dedupe_key, modem_group,
                                 request_report, flash, external_ref)
             VALUES ($1, $2, COALESCE($3, 'notice'), $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
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
        .fetch_one(&self.pool)
        .await;
        match r {
            Ok(row) => Ok(Enqueued {
                id: row.try_get(0)?,
                duplicate: false,
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                let id = sqlx::query_scalar("SELECT id FROM outbox WHERE dedupe_key = $1")
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
        // The category filter only when asked: the plain claim keeps its plan.
        let filter = if only.is_none() {
            ""
        } else {
            " AND category = $5"
        };
        let returning = CLAIMED
            .split(", ")
            .map(|c| format!("o.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH picked AS (
                 SELECT id FROM outbox
                 WHERE state IN ('queued', 'retrying') AND due_at <= $3{filter}
                 ORDER BY priority DESC, due_at, id
                 LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             UPDATE outbox o SET state = 'sending', lease_owner = $1, lease_until = $2, updated_at = $3,
                    inflight_part = NULL
             FROM picked WHERE o.id = picked.id
             RETURNING {returning}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(Ts(until))
            .bind(Ts(now))
            .bind(i64::from(limit));
        if let Some(c) = only {
            q = q.bind(c);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = rows.iter().map(Self::claimed).collect::<Result<Vec<_>>>()?;
        super::claim_order(&mut out);
        self.fill_parts_done(&mut out).await?;
        Ok(out)
    }

    /// Takes the advisory lock of instance `id` on a connection of its own, held
    /// as long as the connection lives; `None` if another session holds it.
    pub async fn lock_instance(&self, id: &str) -> Result<Option<sqlx::PgConnection>> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect_with(&self.pool.connect_options()).await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(format!("smsgw instance {id}"))
            .fetch_one(&mut conn)
            .await?;
        Ok(got.then_some(conn))
    }

    pub async fn truncate_all(&self) -> Result<()> {
        sqlx::query(
            "TRUNCATE outbox_parts, outbox, inbox, inbox_fragments, inbox_fragments_done, opt_outs, calls, compat_cursors RESTART IDENTITY",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
