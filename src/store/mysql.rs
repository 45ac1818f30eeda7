//! MySQL 8 / MariaDB 10.6+ backend. Neither has `UPDATE ... RETURNING` nor
//! `IN (SELECT ... LIMIT)`, so a claim selects `FOR UPDATE SKIP LOCKED` and updates
//! the picked ids in one transaction. Sessions run in UTC (`time_zone = '+00:00'`,
//! sqlx's default), and tables are utf8mb4 so Chinese text and emoji survive.

use super::{
    Activity, Claimed, Delivery, Enqueued, Fragment, InboxMessage, NewMessage, OperatorAction,
    OutboxRow, PartRecord, Rescued, Result, State, StoreError, Transition,
};
use chrono::{DateTime, Utc};
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{QueryBuilder, Row};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
}

impl MySqlStore {
    pub async fn connect(url: &str) -> Result<MySqlStore> {
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
        Ok(MySqlStore { pool })
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

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn enqueue(&self, m: &NewMessage) -> Result<Enqueued> {
        let r = sqlx::query(
            "INSERT INTO outbox (recipient, body, category, priority, send_at, expires_at, dedupe_key, modem_group,
                                 request_report, flash, external_ref)
             VALUES (?, ?, COALESCE(?, 'notice'), ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&m.recipient)
        .bind(&m.body)
        .bind(&m.category)
        .bind(m.priority)
        .bind(m.send_at)
        .bind(m.expires_at)
        .bind(&m.dedupe_key)
        .bind(&m.modem_group)
        .bind(m.request_report)
        .bind(m.flash)
        .bind(&m.external_ref)
        .execute(&self.pool)
        .await;
        match r {
            Ok(done) => Ok(Enqueued {
                id: done.last_insert_id() as i64,
                duplicate: false,
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                let id = sqlx::query_scalar("SELECT id FROM outbox WHERE dedupe_key = ?")
                    .bind(&m.dedupe_key)
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
        let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(now);
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
            .push_bind(until)
            .push(", updated_at = ")
            .push_bind(now)
            .push(" WHERE id IN (");
        in_list(&mut q);
        q.build().execute(&mut *tx).await?;
        let mut q = QueryBuilder::<MySql>::new(
            "SELECT id, recipient, body, category, priority, send_at, expires_at, modem_group, request_report, flash,
                    attempts, due_at, lease_until FROM outbox WHERE id IN (",
        );
        in_list(&mut q);
        let rows = q.build().fetch_all(&mut *tx).await?;
        let mut q = QueryBuilder::<MySql>::new(
            "SELECT outbox_id, seq FROM outbox_parts WHERE outbox_id IN (",
        );
        in_list(&mut q);
        let parts = q.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let text = |t: Option<DateTime<Utc>>| t.map(super::time_text);
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.try_get("id")?;
            let mut parts_done = Vec::new();
            for p in &parts {
                if p.try_get::<i64, _>(0)? == id {
                    parts_done.push(p.try_get(1)?);
                }
            }
            out.push(Claimed {
                id,
                recipient: r.try_get("recipient")?,
                body: r.try_get("body")?,
                category: r.try_get("category")?,
                priority: r.try_get("priority")?,
                send_at: text(r.try_get("send_at")?),
                expires_at: text(r.try_get("expires_at")?),
                modem_group: r.try_get("modem_group")?,
                request_report: r.try_get("request_report")?,
                flash: r.try_get("flash")?,
                attempts: r.try_get("attempts")?,
                due_at: r.try_get("due_at")?,
                lease_until: r.try_get("lease_until")?,
                parts_done,
            });
        }
        out.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.due_at.cmp(&b.due_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(out)
    }

    pub async fn set_inflight(
        &self,
        owner: &str,
        id: i64,
        seq: Option<i32>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE outbox SET inflight_part = ?, lease_until = ? WHERE id = ? AND state = 'sending' AND lease_owner = ?",
        )
        .bind(seq)
        .bind(until)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn record_part(&self, id: i64, p: &PartRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO outbox_parts (outbox_id, seq, total, modem, recipient, mr, submitted_at, status)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE id = id",
        )
        .bind(id)
        .bind(p.seq)
        .bind(p.total)
        .bind(&p.modem)
        .bind(&p.recipient)
        .bind(p.mr.map(i32::from))
        .bind(p.submitted_at)
        .bind(p.status.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn complete(
        &self,
        owner: &str,
        id: i64,
        t: &Transition,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE outbox SET state = ?, last_error = COALESCE(?, last_error), attempts = attempts + ?,
                    due_at = COALESCE(?, due_at), sent_at = IF(?, ?, sent_at),
                    modem = COALESCE(?, modem), parts_total = COALESCE(?, parts_total),
                    delivery = CASE WHEN delivery IN ('delivered', 'failed') THEN delivery ELSE COALESCE(?, delivery) END,
                    lease_owner = NULL, lease_until = NULL, inflight_part = NULL, updated_at = ?
             WHERE id = ? AND state = 'sending' AND lease_owner = ?",
        )
        .bind(t.state.as_str())
        .bind(&t.error)
        .bind(t.attempt_increment)
        .bind(t.due)
        .bind(t.sent)
        .bind(now)
        .bind(&t.modem)
        .bind(t.parts_total)
        .bind(t.delivery.map(Delivery::as_str))
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn rescue_expired(&self, now: DateTime<Utc>) -> Result<Rescued> {
        let mut tx = self.pool.begin().await?;
        let ambiguous = sqlx::query(
            "UPDATE outbox SET state = 'ambiguous',
                    last_error = CONCAT('lease expired while part ', inflight_part,
                                        ' was being sent: it may have reached the network'),
                    lease_owner = NULL, lease_until = NULL, inflight_part = NULL, updated_at = ?
             WHERE state = 'sending' AND lease_until < ? AND inflight_part IS NOT NULL",
        )
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let retrying = sqlx::query(
            "UPDATE outbox SET state = 'retrying', last_error = 'lease expired: the sender stopped; retried',
                    due_at = ?, lease_owner = NULL, lease_until = NULL, updated_at = ?
             WHERE state = 'sending' AND lease_until < ?",
        )
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Rescued {
            retrying,
            ambiguous,
        })
    }

    pub async fn get(&self, id: i64) -> Result<Option<OutboxRow>> {
        let Some(r) = sqlx::query(
            "SELECT id, recipient, category, priority, state, delivery, attempts, last_error, modem, parts_total,
                    sent_at, lease_owner, external_ref FROM outbox WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(super::native::outbox_row(&r)?))
    }

    pub async fn recipient_like(&self, pattern: &str) -> Result<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT id, recipient, category, priority, state, delivery, attempts, last_error, modem, parts_total,
                    sent_at, lease_owner, external_ref FROM outbox WHERE recipient LIKE ? ORDER BY id DESC LIMIT 200",
        )
        .bind(pattern)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(super::native::outbox_row).collect()
    }

    pub async fn operate(&self, id: i64, a: OperatorAction, now: DateTime<Utc>) -> Result<bool> {
        let [s1, s2, s3, s4] = a.from().map(State::as_str);
        let r = sqlx::query(
            "UPDATE outbox SET state = ?, due_at = ?, updated_at = ?, last_error = COALESCE(?, last_error)
             WHERE id = ? AND state IN (?, ?, ?, ?)",
        )
        .bind(a.to().as_str())
        .bind(now)
        .bind(now)
        .bind(a.note())
        .bind(id)
        .bind(s1)
        .bind(s2)
        .bind(s3)
        .bind(s4)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn resolve_sent(
        &self,
        id: i64,
        modem: &str,
        parts_total: i32,
        delivery: Delivery,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE outbox SET state = 'sent', sent_at = ?, updated_at = ?, modem = ?, parts_total = ?,
                    delivery = CASE WHEN delivery IN ('delivered', 'failed') THEN delivery ELSE ? END,
                    last_error = NULL, attempts = attempts + 1
             WHERE id = ? AND state = 'ambiguous'",
        )
        .bind(now)
        .bind(now)
        .bind(modem)
        .bind(parts_total)
        .bind(delivery.as_str())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn activity(&self, now: DateTime<Utc>) -> Result<Activity> {
        let hour_ago = now - chrono::Duration::hours(1);
        let (sent, delivered): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM outbox WHERE sent_at >= ?),
                    (SELECT COUNT(*) FROM outbox WHERE delivered_at >= ?)",
        )
        .bind(hour_ago)
        .bind(hour_ago)
        .fetch_one(&self.pool)
        .await?;
        let oldest: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, due_at FROM outbox WHERE claimable = 1 AND due_at <= ?
             ORDER BY due_at, id LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(Activity {
            sent_last_hour: sent,
            delivered_last_hour: delivered,
            oldest_due: oldest,
        })
    }

    pub async fn parts(&self, id: i64) -> Result<Vec<PartRecord>> {
        let rows = sqlx::query(
            "SELECT seq, total, modem, recipient, mr, submitted_at, status FROM outbox_parts
             WHERE outbox_id = ? ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(super::native::part_record).collect()
    }

    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            // Two branches, each through its index (history, then the claimable rows).
            "SELECT state, category, COUNT(*) FROM outbox WHERE state NOT IN ('queued', 'retrying') GROUP BY state, category
             UNION ALL
             SELECT state, category, COUNT(*) FROM outbox WHERE state IN ('queued', 'retrying') GROUP BY state, category
             ORDER BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    pub async fn add_opt_out(
        &self,
        recipient: &str,
        keyword: Option<&str>,
        source: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO opt_outs (recipient, keyword, source) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE recipient = recipient",
        )
        .bind(recipient)
        .bind(keyword)
        .bind(source)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn opt_outs_like(&self, pattern: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT recipient FROM opt_outs WHERE recipient LIKE ?")
                .bind(pattern)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn insert_inbox(&self, m: &InboxMessage) -> Result<bool> {
        // sqlx sets CLIENT_FOUND_ROWS, so ON DUPLICATE KEY cannot tell a duplicate
        // apart: a plain INSERT whose unique violation means "already stored".
        let r = sqlx::query(
            "INSERT INTO inbox (modem, sender, body, parts, missing_parts, received_at, opt_out, fingerprint)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&m.modem)
        .bind(&m.sender)
        .bind(&m.body)
        .bind(m.parts)
        .bind(m.missing_parts)
        .bind(m.received_at)
        .bind(m.opt_out)
        .bind(m.fingerprint())
        .execute(&self.pool)
        .await;
        match r {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn add_fragment(&self, f: &Fragment) -> Result<Option<Vec<Fragment>>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO inbox_fragments (modem, sender, concat_ref, total, seq, body, received_at)
             VALUES (?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE id = id",
        )
        .bind(&f.modem)
        .bind(&f.sender)
        .bind(f.concat_ref)
        .bind(f.total)
        .bind(f.seq)
        .bind(&f.body)
        .bind(f.received_at)
        .execute(&mut *tx)
        .await?;
        // Locks the message's fragments: a concurrent part waits, then sees them all.
        let rows = sqlx::query(
            "SELECT seq, body, received_at FROM inbox_fragments
             WHERE modem = ? AND sender = ? AND concat_ref = ? AND total = ? ORDER BY seq FOR UPDATE",
        )
        .bind(&f.modem)
        .bind(&f.sender)
        .bind(f.concat_ref)
        .bind(f.total)
        .fetch_all(&mut *tx)
        .await?;
        if rows.len() < f.total as usize {
            tx.commit().await?;
            return Ok(None);
        }
        sqlx::query("DELETE FROM inbox_fragments WHERE modem = ? AND sender = ? AND concat_ref = ? AND total = ?")
            .bind(&f.modem)
            .bind(&f.sender)
            .bind(f.concat_ref)
            .bind(f.total)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(Fragment {
                    seq: r.try_get("seq")?,
                    body: r.try_get("body")?,
                    received_at: r.try_get("received_at")?,
                    ..f.clone()
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    pub async fn stale_fragments(&self, before: DateTime<Utc>) -> Result<Vec<(i64, Fragment)>> {
        let rows = sqlx::query(
            "SELECT id, modem, sender, concat_ref, total, seq, body, received_at FROM inbox_fragments
              WHERE (modem, sender, concat_ref, total) IN (
                    SELECT modem, sender, concat_ref, total FROM inbox_fragments
                     GROUP BY modem, sender, concat_ref, total HAVING MAX(created_at) < ?)
              ORDER BY modem, sender, concat_ref, total, seq",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(super::native::fragment).collect()
    }

    pub async fn delete_fragment(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM inbox_fragments WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn report_candidates(
        &self,
        modem: &str,
        mr: u8,
        since: DateTime<Utc>,
    ) -> Result<Vec<(i64, i32, String)>> {
        let rows = sqlx::query(
            "SELECT outbox_id, seq, recipient FROM outbox_parts
             WHERE modem = ? AND mr = ? AND submitted_at >= ? ORDER BY submitted_at DESC, id DESC",
        )
        .bind(modem)
        .bind(i32::from(mr))
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    pub async fn update_part(&self, id: i64, seq: i32, u: &super::ReportUpdate) -> Result<()> {
        sqlx::query(
            "UPDATE outbox_parts SET status = ?, tp_status = ?, report_at = ?, discharge_at = ?
             WHERE outbox_id = ? AND seq = ?",
        )
        .bind(u.status.as_str())
        .bind(i32::from(u.tp_status))
        .bind(u.report_at)
        .bind(u.discharge_at)
        .bind(id)
        .bind(seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn part_statuses(&self, id: i64) -> Result<Vec<(Delivery, i32)>> {
        let rows = sqlx::query("SELECT status, total FROM outbox_parts WHERE outbox_id = ?")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    super::delivery_from(&r.try_get::<String, _>(0)?),
                    r.try_get(1)?,
                ))
            })
            .collect()
    }

    pub async fn set_delivery(
        &self,
        id: i64,
        d: Delivery,
        at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET delivery = ?, delivered_at = COALESCE(?, delivered_at) WHERE id = ?",
        )
        .bind(d.as_str())
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn parts_sent_since(&self, since: DateTime<Utc>) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT modem, COUNT(*) FROM outbox_parts WHERE submitted_at >= ? GROUP BY modem",
        )
        .bind(since)
        .fetch_all(&self.pool)
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
        Ok(sqlx::query_as(
            // Two branches, each through its index: today's sent rows
            // (outbox_sent_recipient), and the few rows on a modem now.
            "SELECT recipient, COUNT(*) FROM (
                SELECT recipient, category FROM outbox WHERE sent_at >= ? AND recipient LIKE ?
                UNION ALL
                SELECT recipient, category FROM outbox
                 WHERE state = 'sending' AND inflight_part IS NOT NULL
                   AND (sent_at IS NULL OR sent_at < ?) AND recipient LIKE ?
             ) AS t WHERE (? = '' OR category = ?) GROUP BY recipient",
        )
        .bind(since)
        .bind(pattern)
        .bind(since)
        .bind(pattern)
        .bind(category)
        .bind(category)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn expire_pending_delivery(&self, before: DateTime<Utc>) -> Result<u64> {
        sqlx::query(
            "UPDATE outbox_parts SET status = 'unknown' WHERE status = 'pending' AND submitted_at < ?",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query(
            "UPDATE outbox SET delivery = 'unknown' WHERE delivery = 'pending' AND sent_at < ?",
        )
        .bind(before)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub async fn execute_raw(&self, sql: &str) -> Result<u64> {
        Ok(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub async fn truncate_all(&self) -> Result<()> {
        for t in [
            "outbox_parts",
            "outbox",
            "inbox",
            "inbox_fragments",
            "opt_outs",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {t}")))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

/// InnoDB's "deadlock found" (SQLSTATE 40001, error 1213): the transaction was
/// rolled back and may be retried as a whole.
fn is_deadlock(e: &StoreError) -> bool {
    match e {
        StoreError::Database(sqlx::Error::Database(d)) => d.code().as_deref() == Some("40001"),
        _ => false,
    }
}
