//! gammu's tables on each backend: the few statements the translator needs,
//! with explicit column lists (front-ends add columns of their own, such as
//! Kalkun's `id_folder` and `readed`) and nothing that creates or alters a
//! table. Every column is read as text and parsed by the pure layer.
//!
//! Times: gammu-smsd writes and compares local time on SQLite
//! (`datetime('now', 'localtime')`) and PostgreSQL (`timestamp without time
//! zone`), converted here with the machine's zone; MySQL's `timestamp` columns
//! are read and written in UTC, sqlx's session zone ([`Times::LocalButMysql`]).
//! `InsertIntoDB` is kept as the column's own text: it is part of a row's
//! dedupe key, which must not move when the machine's zone does.

use super::{Awaiting, Entry, InboxItem, Part, Phone, Schema, SentItem};
use crate::compat::db::{on_pool, Foreign, Pools, Times};
use crate::store::sql::Dialect;
use crate::store::Result;
use chrono::{DateTime, Duration, Utc};

/// Which `outbox` rows a pass reads. smsgw's own lock (gammu's
/// `SendingTimeOut`, [`LOCK_AHEAD`]) tells the two apart, so that rows smsgw
/// holds for a later send never crowd new ones out of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slice {
    /// Rows smsgw has not locked: to queue.
    New { now: DateTime<Utc> },
    /// Rows smsgw has locked, by `ID` after `after`: to write back.
    Ours { now: DateTime<Utc>, after: i64 },
}

/// How far ahead smsgw sets `SendingTimeOut` on a row it has queued.
pub const LOCK_AHEAD: Duration = Duration::days(365);
/// A lock further ahead than this is smsgw's.
pub const OURS: Duration = Duration::days(300);
/// A lock at most this far ahead is a running gammu-smsd's (60 s while it
/// sends, `RetryTimeout`, 600 s by default, between tries): such a row is
/// left alone until it runs out, as gammu-smsd leaves it.
pub const GAMMU_LOCK: Duration = Duration::minutes(15);

/// gammu's database.
pub type GammuDb = Foreign;

/// The columns read from `outbox`, in this order.
const OUTBOX_COLS: [&str; 18] = [
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
    "SendingTimeOut",
];
const TIME_COLS: [&str; 3] = ["InsertIntoDB", "SendingDateTime", "SendingTimeOut"];
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
        Foreign::connect(url, Times::LocalButMysql).await
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

    /// Which of schema 18's columns the tables have: each is probed with a
    /// query that names it (an error means it is not there).
    pub async fn schema(&self) -> Result<Schema> {
        let has = |table: &'static str, col: &'static str| {
            // SQLite reads a double-quoted name it does not know as a string:
            // its brackets are never a string.
            let name = match self.pool {
                Pools::Sqlite(_) => format!("[{col}]"),
                _ => self.c(col),
            };
            let sql = format!("SELECT {name} FROM {table} WHERE 1 = 0");
            async move {
                let r: std::result::Result<(), sqlx::Error> = on_pool!(self, p => {
                    sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(p).await.map(|_| ())
                });
                match r.map_err(crate::store::StoreError::from) {
                    Ok(()) => Ok(true),
                    // A busy or lost database is not an absent column.
                    Err(e) if e.is_transient() => Err(e),
                    Err(_) => Ok(false),
                }
            }
        };
        Ok(Schema {
            send_days: has("outbox", "SendDays").await?,
            inbox_groups: has("inbox", "MessageID").await?
                && has("inbox", "SequencePosition").await?
                && has("inbox", "PartCount").await?,
        })
    }

    /// Up to `limit` outbox rows of `slice`, oldest first, each with its
    /// multipart rows.
    pub async fn outbox(&self, slice: Slice, schema: &Schema, limit: u32) -> Result<Vec<Entry>> {
        let mut names: Vec<&str> = OUTBOX_COLS.to_vec();
        if schema.send_days {
            names.push("SendDays");
        }
        let cols: Vec<String> = names
            .iter()
            .map(|c| {
                if TIME_COLS.contains(c) {
                    self.time_as_text(c)
                } else {
                    self.as_text(c)
                }
            })
            .collect();
        let (cond, times, after) = match slice {
            Slice::New { now } => {
                let (cond, times) = self.unlocked(now);
                (cond, times, None)
            }
            // No further ahead than smsgw sets it: a row someone parked
            // with a lock years ahead is neither new nor smsgw's.
            Slice::Ours { now, after } => (
                format!(
                    "{lock} >= {t} AND {lock} <= {t} AND {} > ?",
                    self.c("ID"),
                    lock = self.c("SendingTimeOut"),
                    t = self.time_in(),
                ),
                vec![now + OURS, now + LOCK_AHEAD + Duration::days(1)],
                Some(after),
            ),
        };
        let sql = self.ph(&format!(
            "SELECT {} FROM outbox WHERE {cond} ORDER BY {} LIMIT {limit}",
            cols.join(", "),
            self.c("ID")
        ));
        let times: Vec<String> = times
            .iter()
            .map(|t| self.time_out(&t.format("%Y-%m-%d %H:%M:%S").to_string()))
            .collect();
        let rows: Vec<Vec<Option<String>>> = on_pool!(self, p => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for t in &times {
                q = q.bind(t.clone());
            }
            if let Some(a) = after {
                q = q.bind(a);
            }
            let rows = q.fetch_all(p).await?;
            rows.iter()
                .map(|r| names.iter().map(|c| DB::text(r, c).unwrap_or(None)).collect())
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
                inserted_at: None,
                sending_datetime: None,
                sending_timeout: None,
                send_before: take(3),
                send_after: take(4),
                destination: take(5),
                multipart: take(6),
                relative_validity: take(7),
                sender_id: take(8),
                delivery_report: take(9),
                creator_id: take(10),
                priority: take(11),
                send_days: if schema.send_days { take(18) } else { None },
                parts: vec![Part {
                    seq: Some("1".into()),
                    text: take(12),
                    text_decoded: take(13),
                    coding: take(14),
                    udh: take(15),
                    class: take(16),
                }],
            };
            e.sending_timeout = self.time_read(take(17));
            e.insert_into_db = take(1);
            e.inserted_at = self.time_read(e.insert_into_db.clone());
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

    /// The rows neither a running gammu-smsd nor smsgw has locked: the
    /// condition and its times. Not locked, or locked long ago; or smsgw's
    /// lock running out, or a value no daemon wrote (a year from now minus
    /// less than 65 days): the dedupe key tells whether smsgw has it.
    fn unlocked(&self, now: DateTime<Utc>) -> (String, Vec<DateTime<Utc>>) {
        let lock = self.c("SendingTimeOut");
        let t = self.time_in();
        (
            format!("({lock} IS NULL OR {lock} <= {t} OR ({lock} > {t} AND {lock} < {t}))"),
            vec![now, now + GAMMU_LOCK, now + OURS],
        )
    }

    /// Takes gammu's lock on an unlocked row, as gammu-smsd does (a
    /// compare-and-set on `SendingTimeOut`): whether smsgw has it now.
    pub async fn claim(&self, id: i64, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool> {
        let (cond, times) = self.unlocked(now);
        let sql = self.ph(&format!(
            "UPDATE outbox SET {} = {} WHERE {} = ? AND {cond}",
            self.c("SendingTimeOut"),
            self.time_in(),
            self.c("ID")
        ));
        let fmt = |t: &DateTime<Utc>| self.time_out(&t.format("%Y-%m-%d %H:%M:%S").to_string());
        let until = fmt(&until);
        let times: Vec<String> = times.iter().map(fmt).collect();
        let n = on_pool!(self, p => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(until).bind(id);
            for t in &times {
                q = q.bind(t.clone());
            }
            DB::rows_affected(&q.execute(p).await?)
        });
        Ok(n == 1)
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
            // The writer's own InsertIntoDB, as it wrote it (a value that is
            // not a time, such as MySQL's zero date, is replaced by the send).
            let inserted = it
                .insert_into_db
                .as_deref()
                .filter(|t| crate::store::ts::parse_time(t).is_some())
                .map(str::to_string)
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
        // In one transaction, the outbox row first: without transactions
        // (gammu's MySQL tables are MyISAM) a crash between the two leaves
        // parts without their message, which nothing sends, never a message
        // without some of its parts.
        let del = |table: &str| self.ph(&format!("DELETE FROM {table} WHERE {} = ?", self.c("ID")));
        let (outbox, parts) = (del("outbox"), del("outbox_multipart"));
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sqlx::AssertSqlSafe(outbox)).bind(id).execute(&mut *tx).await?;
            sqlx::query(sqlx::AssertSqlSafe(parts)).bind(id).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Copies an incoming message into `inbox`, unless a row with the same
    /// sender, time, text and phone is there (a copy repeated after a crash).
    /// Returns whether it wrote one.
    pub async fn insert_inbox(&self, m: &InboxItem, schema: &Schema) -> Result<bool> {
        let c = |n| self.c(n);
        let received = self.time_out(&m.receiving_datetime);
        let same = format!(
            "{} = ? AND {} = {} AND {} = ? AND {} = ?",
            c("SenderNumber"),
            c("ReceivingDateTime"),
            self.time_in(),
            c("RecipientID"),
            c("TextDecoded")
        );
        let exists = self.ph(&format!("SELECT COUNT(*) FROM inbox WHERE {same}"));
        let n: i64 = on_pool!(self, p => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(exists))
                .bind(m.sender.clone())
                .bind(received.clone())
                .bind(m.recipient_id.clone())
                .bind(m.text_decoded.clone())
                .fetch_one(p)
                .await?
        });
        if n == 0 {
            let processed = if self.is_pg() { "false" } else { "'false'" };
            // Schema 18: the whole message is one group of one part.
            let (group_cols, group_vals) = if schema.inbox_groups {
                (
                    format!(
                        ", {}, {}, {}",
                        c("MessageID"),
                        c("SequencePosition"),
                        c("PartCount")
                    ),
                    ", 0, 1, 1",
                )
            } else {
                (String::new(), "")
            };
            let insert = self.ph(&format!(
                "INSERT INTO inbox ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}{group_cols}) VALUES ({}, ?, ?, ?, '', '', -1, ?, ?, {processed}{group_vals})",
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
        }
        if schema.inbox_groups {
            // gammu's MessageID is the row's own ID (that of a message's
            // first part). Set after the insert, and again over a row a kill
            // left at 0: gammu-smsd's own rows never have 0.
            let sql = self.ph(&format!(
                "UPDATE inbox SET {} = {} WHERE {} = 0 AND {same}",
                c("MessageID"),
                c("ID"),
                c("MessageID")
            ));
            on_pool!(self, p => {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(m.sender.clone())
                    .bind(received.clone())
                    .bind(m.recipient_id.clone())
                    .bind(m.text_decoded.clone())
                    .execute(p)
                    .await?;
            });
        }
        Ok(n == 0)
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
                    insert_into_db: at,
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
