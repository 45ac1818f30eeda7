//! gammu's tables on each backend: the few statements the translator needs,
//! with explicit column lists (front-ends add columns of their own, such as
//! Kalkun's `id_folder` and `readed`) and nothing that creates or alters a
//! table. Every column is read as text and parsed by the pure layer.
//!
//! Times: gammu's SQLite schema stores UTC (`datetime('now')`); MySQL's
//! `timestamp` columns are read and written in UTC (sqlx's session zone);
//! PostgreSQL's are `timestamp without time zone` in the server's local time
//! (`LOCALTIMESTAMP`), converted with the machine's zone ([`Times::UtcButPostgres`]).

use super::{Awaiting, Entry, InboxItem, Part, Phone, SentItem};
use crate::compat::db::{on_pool, Foreign, Pools, Times};
use crate::store::sql::Dialect;
use crate::store::Result;
use chrono::{DateTime, Utc};

/// gammu's database.
pub type GammuDb = Foreign;

/// The columns read from `outbox`, in this order.
const OUTBOX_COLS: [&str; 17] = [
    "ID",
    "InsertIntoDB",
    "SendingDateTime",
    "SendBefore",
    "SendAfter",
    "DestinationNumber",
    "MultiPart",
    "RelativeValidity",
    "SenderID",
    "DeliveryReport",
    "CreatorID",
    "Priority",
    "Text",
    "TextDecoded",
    "Coding",
    "UDH",
    "Class",
];
const TIME_COLS: [&str; 2] = ["InsertIntoDB", "SendingDateTime"];
const PART_COLS: [&str; 7] = [
    "ID",
    "SequencePosition",
    "Text",
    "TextDecoded",
    "Coding",
    "UDH",
    "Class",
];
const SENT_COLS: [&str; 17] = [
    "ID",
    "SequencePosition",
    "InsertIntoDB",
    "SendingDateTime",
    "DestinationNumber",
    "Text",
    "TextDecoded",
    "Coding",
    "UDH",
    "Class",
    "SenderID",
    "Status",
    "StatusCode",
    "TPMR",
    "RelativeValidity",
    "CreatorID",
    "SMSCNumber",
];

impl Foreign {
    /// Connects to gammu's database.
    pub async fn connect_gammu(url: &str) -> Result<GammuDb> {
        Foreign::connect(url, Times::UtcButPostgres).await
    }

    /// The schema version in the `gammu` table.
    pub async fn version(&self) -> Result<Option<i64>> {
        let sql = format!("SELECT {} FROM gammu", self.as_text("Version"));
        let vals: Vec<Option<String>> = on_pool!(self, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?;
            rows.iter().map(|r| DB::text(r, "Version").unwrap_or(None)).collect()
        });
        Ok(vals
            .into_iter()
            .flatten()
            .filter_map(|v| v.trim().parse::<i64>().ok())
            .max())
    }

    /// Up to `limit` outbox rows, oldest first, each with its multipart rows.
    pub async fn outbox(&self, limit: u32) -> Result<Vec<Entry>> {
        let cols: Vec<String> = OUTBOX_COLS
            .iter()
            .map(|c| {
                if TIME_COLS.contains(c) {
                    self.time_as_text(c)
                } else {
                    self.as_text(c)
                }
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM outbox ORDER BY {} LIMIT {limit}",
            cols.join(", "),
            self.c("ID")
        );
        let rows: Vec<Vec<Option<String>>> = on_pool!(self, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?;
            rows.iter()
                .map(|r| OUTBOX_COLS.iter().map(|c| DB::text(r, c).unwrap_or(None)).collect())
                .collect()
        });
        let mut out = Vec::with_capacity(rows.len());
        for mut r in rows {
            let Some(id) = r[0].as_deref().and_then(|v| v.trim().parse::<i64>().ok()) else {
                continue;
            };
            let mut take = |i: usize| r[i].take();
            let mut e = Entry {
                id,
                insert_into_db: None,
                sending_datetime: None,
                send_before: take(3),
                send_after: take(4),
                destination: take(5),
                multipart: take(6),
                relative_validity: take(7),
                sender_id: take(8),
                delivery_report: take(9),
                creator_id: take(10),
                priority: take(11),
                parts: vec![Part {
                    seq: Some("1".into()),
                    text: take(12),
                    text_decoded: take(13),
                    coding: take(14),
                    udh: take(15),
                    class: take(16),
                }],
            };
            e.insert_into_db = self.time_read(take(1));
            e.sending_datetime = self.time_read(take(2));
            out.push(e);
        }
        let multi: Vec<String> = out
            .iter()
            .filter(|e| super::truthy(e.multipart.as_deref()).unwrap_or(false))
            .map(|e| e.id.to_string())
            .collect();
        if multi.is_empty() {
            return Ok(out);
        }
        let cols: Vec<String> = PART_COLS.iter().map(|c| self.as_text(c)).collect();
        let sql = format!(
            "SELECT {} FROM outbox_multipart WHERE {} IN ({}) ORDER BY {}, {}",
            cols.join(", "),
            self.c("ID"),
            multi.join(", "),
            self.c("ID"),
            self.c("SequencePosition")
        );
        let rows: Vec<Vec<Option<String>>> = on_pool!(self, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?;
            rows.iter()
                .map(|r| PART_COLS.iter().map(|c| DB::text(r, c).unwrap_or(None)).collect())
                .collect()
        });
        for mut r in rows {
            let Some(id) = r[0].as_deref().and_then(|v| v.trim().parse::<i64>().ok()) else {
                continue;
            };
            if let Some(e) = out.iter_mut().find(|e| e.id == id) {
                e.parts.push(Part {
                    seq: r[1].take(),
                    text: r[2].take(),
                    text_decoded: r[3].take(),
                    coding: r[4].take(),
                    udh: r[5].take(),
                    class: r[6].take(),
                });
            }
        }
        Ok(out)
    }

    /// gammu's own lock on a row (`SendingTimeOut`), set when smsgw has it:
    /// a gammu-smsd still running beside smsgw leaves the row alone.
    pub async fn stamp(&self, id: i64, until: DateTime<Utc>) -> Result<()> {
        let sql = self.ph(&format!(
            "UPDATE outbox SET {} = {} WHERE {} = ?",
            self.c("SendingTimeOut"),
            self.time_in(),
            self.c("ID")
        ));
        let until = self.time_out(&until.format("%Y-%m-%d %H:%M:%S").to_string());
        on_pool!(self, p => {
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(until).bind(id).execute(p).await?;
        });
        Ok(())
    }

    /// Writes the outcome: `sentitems` rows first (a repeat after a crash is
    /// ignored by their key), then the `outbox_multipart` and `outbox` rows go.
    pub async fn write_back(&self, id: i64, items: &[SentItem]) -> Result<()> {
        let cols: Vec<String> = SENT_COLS.iter().map(|c| self.c(c)).collect();
        let vals: Vec<&str> = SENT_COLS
            .iter()
            .map(|c| {
                if *c == "InsertIntoDB" || *c == "SendingDateTime" {
                    self.time_in()
                } else {
                    "?"
                }
            })
            .collect();
        let (verb, tail) = match self.pool {
            Pools::Sqlite(_) => ("INSERT OR IGNORE", ""),
            Pools::Postgres(_) => ("INSERT", " ON CONFLICT DO NOTHING"),
            Pools::Mysql(_) => ("INSERT IGNORE", ""),
        };
        let insert = self.ph(&format!(
            "{verb} INTO sentitems ({}) VALUES ({}){tail}",
            cols.join(", "),
            vals.join(", ")
        ));
        for it in items {
            let inserted = it
                .insert_into_db
                .as_deref()
                .map(|t| self.time_out(t))
                .unwrap_or_else(|| self.time_out(&it.sending_datetime));
            let sending = self.time_out(&it.sending_datetime);
            let sql = insert.clone();
            on_pool!(self, p => {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(it.id)
                    .bind(it.seq)
                    .bind(inserted.clone())
                    .bind(sending.clone())
                    .bind(it.destination.clone())
                    .bind(it.text.clone())
                    .bind(it.text_decoded.clone())
                    .bind(it.coding.clone())
                    .bind(it.udh.clone())
                    .bind(it.class)
                    .bind(it.sender_id.clone())
                    .bind(it.status)
                    .bind(it.status_code)
                    .bind(it.tpmr)
                    .bind(it.relative_validity)
                    .bind(it.creator_id.clone())
                    .bind("")
                    .execute(p)
                    .await?;
            });
        }
        crate::failpoint::hit("gammu_before_delete");
        for table in ["outbox_multipart", "outbox"] {
            let sql = self.ph(&format!("DELETE FROM {table} WHERE {} = ?", self.c("ID")));
            on_pool!(self, p => {
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).execute(p).await?;
            });
        }
        Ok(())
    }

    /// Copies an incoming message into `inbox`, unless a row with the same
    /// sender, time, text and phone is there (a copy repeated after a crash).
    /// Returns whether it wrote one.
    pub async fn insert_inbox(&self, m: &InboxItem) -> Result<bool> {
        let c = |n| self.c(n);
        let received = self.time_out(&m.receiving_datetime);
        let exists = self.ph(&format!(
            "SELECT COUNT(*) FROM inbox WHERE {} = ? AND {} = {} AND {} = ? AND {} = ?",
            c("SenderNumber"),
            c("ReceivingDateTime"),
            self.time_in(),
            c("RecipientID"),
            c("TextDecoded")
        ));
        let n: i64 = on_pool!(self, p => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(exists))
                .bind(m.sender.clone())
                .bind(received.clone())
                .bind(m.recipient_id.clone())
                .bind(m.text_decoded.clone())
                .fetch_one(p)
                .await?
        });
        if n > 0 {
            return Ok(false);
        }
        let processed = if self.is_pg() { "false" } else { "'false'" };
        let insert = self.ph(&format!(
            "INSERT INTO inbox ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}) VALUES ({}, ?, ?, ?, '', '', -1, ?, ?, {processed})",
            c("ReceivingDateTime"),
            c("SenderNumber"),
            c("Coding"),
            c("Text"),
            c("UDH"),
            c("SMSCNumber"),
            c("Class"),
            c("TextDecoded"),
            c("RecipientID"),
            c("Processed"),
            self.time_in()
        ));
        on_pool!(self, p => {
            sqlx::query(sqlx::AssertSqlSafe(insert))
                .bind(received.clone())
                .bind(m.sender.clone())
                .bind(m.coding)
                .bind(m.text.clone())
                .bind(m.text_decoded.clone())
                .bind(m.recipient_id.clone())
                .execute(p)
                .await?;
        });
        Ok(true)
    }

    /// Refreshes a modem's `phones` row, inserting it the first time.
    pub async fn refresh_phone(&self, ph: &Phone) -> Result<()> {
        let c = |n| self.c(n);
        let flag = |b: bool| match (self.is_pg(), b) {
            (true, b) => b.to_string(),
            (false, true) => "'yes'".to_string(),
            (false, false) => "'no'".to_string(),
        };
        let timeout = self.time_out(&ph.timeout);
        let update = self.ph(&format!(
            "UPDATE phones SET {} = ?, {} = ?, {} = ?, {} = ?, {} = ?, {} = ?, {} = {}, {} = {}, {} = {}, {} = ?, {} = ?, {} = {} WHERE {} = ?",
            c("ID"),
            c("IMSI"),
            c("NetCode"),
            c("NetName"),
            c("Client"),
            c("Signal"),
            c("Send"),
            flag(ph.send),
            c("Receive"),
            flag(ph.receive),
            c("TimeOut"),
            self.time_in(),
            c("Sent"),
            c("Received"),
            c("Battery"),
            "-1",
            c("IMEI")
        ));
        let n = on_pool!(self, p => {
            sqlx::query(sqlx::AssertSqlSafe(update))
                .bind(ph.id.clone())
                .bind(ph.imsi.clone())
                .bind(ph.net_code.clone())
                .bind(ph.net_name.clone())
                .bind(ph.client.clone())
                .bind(ph.signal)
                .bind(timeout.clone())
                .bind(ph.sent)
                .bind(ph.received)
                .bind(ph.imei.clone())
                .execute(p)
                .await?
                .rows_affected()
        });
        if n > 0 {
            return Ok(());
        }
        let insert = self.ph(&format!(
            "INSERT INTO phones ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}) VALUES (?, ?, ?, ?, ?, ?, ?, {}, {}, {}, ?, ?, -1)",
            c("ID"),
            c("IMEI"),
            c("IMSI"),
            c("NetCode"),
            c("NetName"),
            c("Client"),
            c("Signal"),
            c("Send"),
            c("Receive"),
            c("TimeOut"),
            c("Sent"),
            c("Received"),
            c("Battery"),
            flag(ph.send),
            flag(ph.receive),
            self.time_in()
        ));
        on_pool!(self, p => {
            sqlx::query(sqlx::AssertSqlSafe(insert))
                .bind(ph.id.clone())
                .bind(ph.imei.clone())
                .bind(ph.imsi.clone())
                .bind(ph.net_code.clone())
                .bind(ph.net_name.clone())
                .bind(ph.client.clone())
                .bind(ph.signal)
                .bind(timeout.clone())
                .bind(ph.sent)
                .bind(ph.received)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// `sentitems` rows sent since `since` that wait for a delivery report.
    pub async fn awaiting(&self, since: DateTime<Utc>) -> Result<Vec<Awaiting>> {
        let sql = self.ph(&format!(
            "SELECT {}, {}, {} FROM sentitems WHERE {} = 'SendingOK' AND {} IS NULL AND {} >= {}",
            self.as_text("ID"),
            self.as_text("SequencePosition"),
            self.time_as_text("InsertIntoDB"),
            self.c("Status"),
            self.c("DeliveryDateTime"),
            self.c("SendingDateTime"),
            self.time_in()
        ));
        let since = self.time_out(&since.format("%Y-%m-%d %H:%M:%S").to_string());
        let rows: Vec<[Option<String>; 3]> = on_pool!(self, p => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(since).fetch_all(p).await?;
            rows.iter()
                .map(|r| {
                    ["ID", "SequencePosition", "InsertIntoDB"]
                        .map(|c| DB::text(r, c).unwrap_or(None))
                })
                .collect()
        });
        Ok(rows
            .into_iter()
            .filter_map(|[id, seq, at]| {
                Some(Awaiting {
                    id: id?.trim().parse().ok()?,
                    seq: seq?.trim().parse().ok()?,
                    insert_into_db: self.time_read(at),
                })
            })
            .collect())
    }

    /// A delivery report onto its `sentitems` row.
    pub async fn set_delivery(
        &self,
        a: &Awaiting,
        status: &str,
        at: Option<&str>,
        status_error: i64,
    ) -> Result<()> {
        let sql = self.ph(&format!(
            "UPDATE sentitems SET {} = ?, {} = {}, {} = ? WHERE {} = ? AND {} = ? AND {} = 'SendingOK'",
            self.c("Status"),
            self.c("DeliveryDateTime"),
            self.time_in(),
            self.c("StatusError"),
            self.c("ID"),
            self.c("SequencePosition"),
            self.c("Status")
        ));
        let at = at.map(|t| self.time_out(t));
        on_pool!(self, p => {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(status.to_string())
                .bind(at.clone())
                .bind(status_error)
                .bind(a.id)
                .bind(a.seq)
                .execute(p)
                .await?;
        });
        Ok(())
    }
}
