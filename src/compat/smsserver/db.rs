//! SMSServer's tables on each backend, with explicit column lists and nothing
//! that creates or alters them. Times are the machine's local time on every
//! backend, as SMSServer (Java, `datetime`/`timestamp` columns) writes them.

use super::{CallRow, InRow, OutRow, Outcome};
use crate::compat::db::{on_pool, Foreign, Times};
use crate::store::sql::Dialect;
use crate::store::Result;

const OUT_COLS: [&str; 11] = [
    "id",
    "recipient",
    "text",
    "encoding",
    "status_report",
    "flash_sms",
    "priority",
    "create_date",
    "gateway_id",
    "status",
    "sent_date",
];
const OUT_TIMES: [&str; 2] = ["create_date", "sent_date"];

/// SMSServer's database.
pub type SmsServerDb = Foreign;

impl Foreign {
    /// Connects to SMSServer's database.
    pub async fn connect_smsserver(url: &str) -> Result<SmsServerDb> {
        Foreign::connect(url, Times::Local).await
    }

    fn out_rows_sql(&self, condition: &str, limit: u32) -> String {
        let cols: Vec<String> = OUT_COLS
            .iter()
            .map(|c| {
                if OUT_TIMES.contains(c) {
                    self.time_as_text(c)
                } else {
                    self.as_text(c)
                }
            })
            .collect();
        format!(
            "SELECT {} FROM smsserver_out WHERE {condition} ORDER BY id LIMIT {limit}",
            cols.join(", ")
        )
    }

    async fn out_rows(&self, sql: String, after: i64) -> Result<Vec<OutRow>> {
        let rows: Vec<Vec<Option<String>>> = on_pool!(self, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after).fetch_all(p).await?;
            rows.iter()
                .map(|r| OUT_COLS.iter().map(|c| DB::text(r, c).unwrap_or(None)).collect())
                .collect()
        });
        Ok(rows
            .into_iter()
            .filter_map(|mut r| {
                let id = r[0].as_deref()?.trim().parse().ok()?;
                let mut t = |i: usize| r[i].take();
                Some(OutRow {
                    id,
                    recipient: t(1),
                    text: t(2),
                    encoding: t(3),
                    status_report: t(4),
                    flash_sms: t(5),
                    priority: t(6),
                    // As the column holds it: the dedupe key must not move
                    // when the machine's zone does.
                    create_date: t(7),
                    gateway_id: t(8),
                    status: t(9),
                    sent_date: self.time_read(t(10)),
                })
            })
            .collect())
    }

    /// Up to `limit` rows in `status` (`U` to queue, `Q` waiting for their
    /// outcome) with an id after `after`, oldest first. The two are read
    /// apart so that rows smsgw holds for later never crowd out new ones.
    pub async fn smsserver_rows(
        &self,
        status: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<OutRow>> {
        let sql = self.ph(&self.out_rows_sql(&format!("status = '{status}' AND id > ?"), limit));
        self.out_rows(sql, after).await
    }

    /// `U` -> `Q`: smsgw has the row.
    pub async fn smsserver_queued(&self, id: i64) -> Result<()> {
        let sql = self.ph("UPDATE smsserver_out SET status = 'Q' WHERE id = ? AND status = 'U'");
        on_pool!(self, p => {
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).execute(p).await?;
        });
        Ok(())
    }

    /// The outcome, once: only a row still `U` or `Q` is changed.
    pub async fn smsserver_outcome(&self, id: i64, o: &Outcome) -> Result<()> {
        let sql = self.ph(&format!(
            "UPDATE smsserver_out SET status = ?, sent_date = {}, ref_no = ?, errors = errors + ?
             WHERE id = ? AND status IN ('U', 'Q')",
            self.time_in()
        ));
        let sent = o.sent_date.as_deref().map(|t| self.time_out(t));
        on_pool!(self, p => {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(o.status)
                .bind(sent.clone())
                .bind(o.ref_no.clone())
                .bind(o.errors)
                .bind(id)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// A received message or status report, unless the same row is there (a
    /// copy repeated after a crash). Returns whether it wrote one.
    pub async fn smsserver_insert_in(&self, r: &InRow) -> Result<bool> {
        let t = self.time_in();
        let exists = self.ph(&format!(
            "SELECT COUNT(*) FROM smsserver_in WHERE originator = ? AND type = ? AND message_date = {t}
             AND gateway_id = ? AND text = ? AND COALESCE(original_ref_no, '') = ?"
        ));
        let message_date = self.time_out(&r.message_date);
        let n: i64 = on_pool!(self, p => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(exists))
                .bind(r.originator.clone())
                .bind(r.kind)
                .bind(message_date.clone())
                .bind(r.gateway_id.clone())
                .bind(r.text.clone())
                .bind(r.original_ref_no.clone().unwrap_or_default())
                .fetch_one(p)
                .await?
        });
        if n > 0 {
            return Ok(false);
        }
        let insert = self.ph(&format!(
            "INSERT INTO smsserver_in (process, originator, type, encoding, message_date, receive_date,
               text, original_ref_no, original_receive_date, gateway_id)
             VALUES (0, ?, ?, ?, {t}, {t}, ?, ?, {t}, ?)"
        ));
        let receive = self.time_out(&r.receive_date);
        let original = r.original_receive_date.as_deref().map(|d| self.time_out(d));
        on_pool!(self, p => {
            sqlx::query(sqlx::AssertSqlSafe(insert))
                .bind(r.originator.clone())
                .bind(r.kind)
                .bind(r.encoding)
                .bind(message_date.clone())
                .bind(receive.clone())
                .bind(r.text.clone())
                .bind(r.original_ref_no.clone())
                .bind(original.clone())
                .bind(r.gateway_id.clone())
                .execute(p)
                .await?;
        });
        Ok(true)
    }

    /// An incoming call, unless the same row is there.
    pub async fn smsserver_insert_call(&self, c: &CallRow) -> Result<bool> {
        let t = self.time_in();
        let exists = self.ph(&format!(
            "SELECT COUNT(*) FROM smsserver_calls WHERE call_date = {t} AND gateway_id = ? AND caller_id = ?"
        ));
        let at = self.time_out(&c.call_date);
        let n: i64 = on_pool!(self, p => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(exists))
                .bind(at.clone())
                .bind(c.gateway_id.clone())
                .bind(c.caller_id.clone())
                .fetch_one(p)
                .await?
        });
        if n > 0 {
            return Ok(false);
        }
        let insert = self.ph(&format!(
            "INSERT INTO smsserver_calls (call_date, gateway_id, caller_id) VALUES ({t}, ?, ?)"
        ));
        on_pool!(self, p => {
            sqlx::query(sqlx::AssertSqlSafe(insert))
                .bind(at.clone())
                .bind(c.gateway_id.clone())
                .bind(c.caller_id.clone())
                .execute(p)
                .await?;
        });
        Ok(true)
    }
}
