//! PostgreSQL backend: for sites where other systems share the database and
//! several smsgw instances share one outbox. Claims skip rows another claimer has
//! locked (`FOR UPDATE SKIP LOCKED`), so instances never wait on or double-claim
//! each other; an insert trigger notifies `smsgw_outbox` so pickup is immediate.

use super::{
    Activity, Claimed, Delivery, Enqueued, Fragment, InboxMessage, NewMessage, OperatorAction,
    OutboxRow, PartRecord, Rescued, Result, State, StoreError, Transition,
};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use std::time::Duration;

/// The channel the insert trigger notifies.
pub const CHANNEL: &str = "smsgw_outbox";

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

fn claimed(r: &PgRow) -> Result<Claimed> {
    let t = |c: &str| -> Result<Option<String>> {
        Ok(r.try_get::<Option<DateTime<Utc>>, _>(c)?
            .map(super::time_text))
    };
    Ok(Claimed {
        id: r.try_get("id")?,
        recipient: r.try_get("recipient")?,
        body: r.try_get("body")?,
        category: r.try_get("category")?,
        priority: r.try_get("priority")?,
        send_at: t("send_at")?,
        expires_at: t("expires_at")?,
        modem_group: r.try_get("modem_group")?,
        request_report: r.try_get("request_report")?,
        flash: r.try_get("flash")?,
        attempts: r.try_get("attempts")?,
        due_at: r.try_get("due_at")?,
        lease_until: r.try_get("lease_until")?,
        parts_done: r
            .try_get::<Option<Vec<i32>>, _>("parts_done")?
            .unwrap_or_default(),
    })
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect {
                backend: "postgres",
                target: super::redact_url(url),
                source,
            })?;
        Ok(PgStore { pool })
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

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn enqueue(&self, m: &NewMessage) -> Result<Enqueued> {
        let r = sqlx::query(
            "INSERT INTO outbox (recipient, body, category, priority, send_at, expires_at, dedupe_key, modem_group,
                                 request_report, flash, external_ref)
             VALUES ($1, $2, COALESCE($3, 'notice'), $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
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
        .fetch_one(&self.pool)
        .await;
        match r {
            Ok(row) => Ok(Enqueued {
                id: row.try_get(0)?,
                duplicate: false,
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                let id = sqlx::query_scalar("SELECT id FROM outbox WHERE dedupe_key = $1")
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
        let sql = format!(
            "WITH picked AS (
                 SELECT id FROM outbox
                 WHERE state IN ('queued', 'retrying') AND due_at <= $3{filter}
                 ORDER BY priority DESC, due_at, id
                 LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             UPDATE outbox o SET state = 'sending', lease_owner = $1, lease_until = $2, updated_at = $3
             FROM picked WHERE o.id = picked.id
             RETURNING o.id, o.recipient, o.body, o.category, o.priority, o.send_at, o.expires_at, o.modem_group,
                       o.request_report, o.flash, o.attempts, o.due_at, o.lease_until,
                       (SELECT array_agg(seq) FROM outbox_parts p WHERE p.outbox_id = o.id) AS parts_done"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(until)
            .bind(now)
            .bind(i64::from(limit));
        if let Some(c) = only {
            q = q.bind(c);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = rows.iter().map(claimed).collect::<Result<Vec<_>>>()?;
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
            "UPDATE outbox SET inflight_part = $1, lease_until = $2
             WHERE id = $3 AND state = 'sending' AND lease_owner = $4",
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (outbox_id, seq) DO NOTHING",
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
            "UPDATE outbox SET state = $1, last_error = COALESCE($2, last_error), attempts = attempts + $3,
                    due_at = COALESCE($4, due_at), sent_at = CASE WHEN $5 THEN $6 ELSE sent_at END,
                    modem = COALESCE($7, modem), parts_total = COALESCE($8, parts_total),
                    delivery = CASE WHEN delivery IN ('delivered', 'failed') THEN delivery ELSE COALESCE($9, delivery) END,
                    lease_owner = NULL, lease_until = NULL, inflight_part = NULL, updated_at = $6
             WHERE id = $10 AND state = 'sending' AND lease_owner = $11",
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
                    last_error = 'lease expired while part ' || inflight_part || ' was being sent: it may have reached the network',
                    lease_owner = NULL, lease_until = NULL, inflight_part = NULL, updated_at = $1
             WHERE state = 'sending' AND lease_until < $1 AND inflight_part IS NOT NULL",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let retrying = sqlx::query(
            "UPDATE outbox SET state = 'retrying', last_error = 'lease expired: the sender stopped; retried',
                    due_at = $1, lease_owner = NULL, lease_until = NULL, updated_at = $1
             WHERE state = 'sending' AND lease_until < $1",
        )
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
                    sent_at, lease_owner, external_ref FROM outbox WHERE id = $1",
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
                    sent_at, lease_owner, external_ref FROM outbox WHERE recipient LIKE $1 ORDER BY id DESC LIMIT 200",
        )
        .bind(pattern)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(super::native::outbox_row).collect()
    }

    pub async fn operate(&self, id: i64, a: OperatorAction, now: DateTime<Utc>) -> Result<bool> {
        let [s1, s2, s3, s4] = a.from().map(State::as_str);
        let r = sqlx::query(
            "UPDATE outbox SET state = $1, due_at = $2, updated_at = $2, last_error = COALESCE($3, last_error)
             WHERE id = $4 AND state IN ($5, $6, $7, $8)",
        )
        .bind(a.to().as_str())
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
            "UPDATE outbox SET state = 'sent', sent_at = $1, updated_at = $1, modem = $2, parts_total = $3,
                    delivery = CASE WHEN delivery IN ('delivered', 'failed') THEN delivery ELSE $4 END,
                    last_error = NULL, attempts = attempts + 1
             WHERE id = $5 AND state = 'ambiguous'",
        )
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
            "SELECT (SELECT COUNT(*) FROM outbox WHERE sent_at >= $1),
                    (SELECT COUNT(*) FROM outbox WHERE delivered_at >= $1)",
        )
        .bind(hour_ago)
        .fetch_one(&self.pool)
        .await?;
        let oldest: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, due_at FROM outbox WHERE state IN ('queued', 'retrying') AND due_at <= $1
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
             WHERE outbox_id = $1 ORDER BY seq",
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
            "INSERT INTO opt_outs (recipient, keyword, source) VALUES ($1, $2, $3) ON CONFLICT (recipient) DO NOTHING",
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
            sqlx::query_scalar("SELECT recipient FROM opt_outs WHERE recipient LIKE $1")
                .bind(pattern)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn insert_inbox(&self, m: &InboxMessage) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO inbox (modem, sender, body, parts, missing_parts, received_at, opt_out, fingerprint)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (fingerprint) DO NOTHING",
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
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn add_fragment(&self, f: &Fragment) -> Result<Option<Vec<Fragment>>> {
        let mut tx = self.pool.begin().await?;
        // Serialise the fragments of one message so two parts arriving at once
        // cannot both see an incomplete set.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2 || '/' || $3::text))")
            .bind(&f.modem)
            .bind(&f.sender)
            .bind(f.concat_ref)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO inbox_fragments (modem, sender, concat_ref, total, seq, body, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
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
        let rows = sqlx::query(
            "SELECT seq, body, received_at FROM inbox_fragments
             WHERE modem = $1 AND sender = $2 AND concat_ref = $3 AND total = $4 ORDER BY seq",
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
        sqlx::query("DELETE FROM inbox_fragments WHERE modem = $1 AND sender = $2 AND concat_ref = $3 AND total = $4")
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
                     GROUP BY modem, sender, concat_ref, total HAVING MAX(created_at) < $1)
              ORDER BY modem, sender, concat_ref, total, seq",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(super::native::fragment).collect()
    }

    pub async fn delete_fragment(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM inbox_fragments WHERE id = $1")
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
             WHERE modem = $1 AND mr = $2 AND submitted_at >= $3 ORDER BY submitted_at DESC, id DESC",
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
            "UPDATE outbox_parts SET status = $1, tp_status = $2, report_at = $3, discharge_at = $4
             WHERE outbox_id = $5 AND seq = $6",
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
        let rows = sqlx::query("SELECT status, total FROM outbox_parts WHERE outbox_id = $1")
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
        sqlx::query("UPDATE outbox SET delivery = $1, delivered_at = COALESCE($2, delivered_at) WHERE id = $3")
            .bind(d.as_str())
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn parts_sent_since(&self, since: DateTime<Utc>) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT modem, COUNT(*) FROM outbox_parts WHERE submitted_at >= $1 GROUP BY modem",
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
                SELECT recipient, category FROM outbox WHERE sent_at >= $2 AND recipient LIKE $1
                UNION ALL
                SELECT recipient, category FROM outbox
                 WHERE state = 'sending' AND inflight_part IS NOT NULL
                   AND (sent_at IS NULL OR sent_at < $2) AND recipient LIKE $1
             ) AS t WHERE ($3 = '' OR category = $3) GROUP BY recipient",
        )
        .bind(pattern)
        .bind(since)
        .bind(category)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn expire_pending_delivery(&self, before: DateTime<Utc>) -> Result<u64> {
        sqlx::query(
            "UPDATE outbox_parts SET status = 'unknown' WHERE status = 'pending' AND submitted_at < $1",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query(
            "UPDATE outbox SET delivery = 'unknown' WHERE delivery = 'pending' AND sent_at < $1",
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
        sqlx::query(
            "TRUNCATE outbox_parts, outbox, inbox, inbox_fragments, opt_outs RESTART IDENTITY",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
