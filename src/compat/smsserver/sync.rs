//! The task that keeps SMSServer's tables and smsgw in step: every poll it
//! queues `U` rows and marks them `Q`, writes the outcome of final ones (`S`
//! or `F`), and copies received messages, status reports and calls. Every
//! step is idempotent (see the module above).

use super::db::SmsServerDb;
use super::{call, dedupe_key, inbound, outcome, pickup, status_report, Outcome};
use crate::compat::{Layer, Rotor, Saved, SETTLED};
use crate::store::{ReportCursor, Store, StoreError};
use chrono::{DateTime, Duration, Utc};
use tracing::{info, warn};

const BATCH: u32 = 500;
/// How far back a first run copies smsgw's incoming messages and reports.
const WINDOW: Duration = Duration::days(3);

/// Connects and checks that SMSServer's three tables are there.
pub async fn open(url: &str) -> anyhow::Result<SmsServerDb> {
    let db = SmsServerDb::connect_smsserver(url).await?;
    db.smsserver_rows("U", 0, 1)
        .await
        .map_err(|e| anyhow::anyhow!("reading smsserver_out: {e}"))?;
    Ok(db)
}

/// The SMSServer layer: its connections and what it remembers between passes.
pub struct SmsServer {
    pub store: Store,
    pub db: SmsServerDb,
    /// The last smsgw inbox row and call copied, and the last report (the
    /// time it was recorded in microseconds, then its part id): kept in
    /// `compat_cursors`.
    pub inbox: Saved,
    pub calls: Saved,
    pub reports: Saved,
    /// Where the walk through the `Q` rows has got to.
    pub queued: Rotor,
}

impl SmsServer {
    pub async fn new(store: Store, db: SmsServerDb) -> Result<SmsServer, StoreError> {
        // A first run copies nothing older than WINDOW: the reports before it.
        let first = (Utc::now() - WINDOW).timestamp_micros();
        Ok(SmsServer {
            inbox: Saved::load(&store, "smsserver:inbox", 0).await?,
            calls: Saved::load(&store, "smsserver:calls", 0).await?,
            reports: Saved::load(&store, "smsserver:reports", first).await?,
            queued: Rotor::default(),
            store,
            db,
        })
    }
}

impl Layer for SmsServer {
    const NAME: &'static str = "the SMSServer tables";
    async fn pass(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        pass(self, now).await.map(|_| ())
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub queued: u32,
    pub finished: u32,
    pub received: u32,
    pub reports: u32,
    pub calls: u32,
}

/// A row that ends without being sent.
const FAILED: Outcome = Outcome {
    status: "F",
    sent_date: None,
    ref_no: None,
    errors: 1,
};

pub async fn pass(l: &mut SmsServer, now: DateTime<Utc>) -> Result<Pass, StoreError> {
    let mut done = Pass::default();
    let (store, db) = (&l.store, &l.db);
    for r in db.smsserver_rows("U", 0, BATCH).await? {
        match store.by_dedupe_key(&dedupe_key(&r)).await? {
            None => match pickup(&r) {
                Ok(m) => match store.enqueue(&m).await {
                    Ok(q) => {
                        crate::failpoint::hit("smsserver_after_enqueue");
                        db.smsserver_queued(r.id).await?;
                        info!(smsserver_id = r.id, id = q.id, "smsserver_out row queued");
                        done.queued += 1;
                    }
                    Err(e) if e.is_transient() => return Err(e),
                    // A value smsgw's own table refuses: this row fails alone.
                    Err(e) => {
                        warn!(smsserver_id = r.id, reason = %e, "smsserver_out row failed (F): smsgw's outbox refused it");
                        db.smsserver_outcome(r.id, &FAILED).await?;
                        done.finished += 1;
                    }
                },
                Err(why) => {
                    warn!(smsserver_id = r.id, reason = %why, "smsserver_out row failed (F) without being sent");
                    db.smsserver_outcome(r.id, &FAILED).await?;
                    done.finished += 1;
                }
            },
            // Queued by smsgw, which was killed before it marked the row Q.
            Some(row) => {
                db.smsserver_queued(r.id).await?;
                done.finished += finish(store, db, r.id, &row).await?;
            }
        }
    }
    let queued = db.smsserver_rows("Q", l.queued.after, BATCH).await?;
    l.queued
        .advance(queued.last().map(|r| r.id), queued.len(), BATCH);
    for r in queued {
        if let Some(row) = store.by_dedupe_key(&dedupe_key(&r)).await? {
            done.finished += finish(store, db, r.id, &row).await?;
        }
    }
    let after = ReportCursor {
        at: DateTime::from_timestamp_micros(l.reports.value).unwrap_or_default(),
        part_id: l.reports.part,
    };
    for r in store
        .reports_after("smsserver:", after, now - SETTLED, i64::from(BATCH))
        .await?
    {
        if let Some(s) = status_report(&r.report.part.recipient, &r.report) {
            match db.smsserver_insert_in(&s).await {
                Ok(true) => done.reports += 1,
                Ok(false) => {}
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    warn!(key = ?r.dedupe_key, error = %e, "status report not copied to smsserver_in")
                }
            }
        }
        l.reports.value = r.cursor.at.timestamp_micros();
        l.reports.part = r.cursor.part_id;
        l.reports.save(store).await?;
    }
    let since = if l.inbox.is_first() {
        now - WINDOW
    } else {
        DateTime::<Utc>::UNIX_EPOCH
    };
    for (id, m) in store
        .inbox_after(l.inbox.value, since, now - SETTLED, i64::from(BATCH))
        .await?
    {
        match db.smsserver_insert_in(&inbound(&m, now)).await {
            Ok(true) => done.received += 1,
            Ok(false) => {}
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => warn!(id, error = %e, "incoming message not copied to smsserver_in"),
        }
        l.inbox.value = id;
        l.inbox.save(store).await?;
    }
    for (id, c) in store
        .calls_after(l.calls.value, now - SETTLED, i64::from(BATCH))
        .await?
    {
        match db.smsserver_insert_call(&call(&c)).await {
            Ok(true) => done.calls += 1,
            Ok(false) => {}
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => warn!(id, error = %e, "call not copied to smsserver_calls"),
        }
        l.calls.value = id;
        l.calls.save(store).await?;
    }
    Ok(done)
}

/// Writes the outcome of a row smsgw has, once it is final; returns 1 if it
/// wrote one.
async fn finish(
    store: &Store,
    db: &SmsServerDb,
    id: i64,
    row: &crate::store::OutboxRow,
) -> Result<u32, StoreError> {
    let parts = store.part_reports(row.id).await?;
    let Some(o) = outcome(row, &parts) else {
        return Ok(0);
    };
    db.smsserver_outcome(id, &o).await?;
    info!(
        smsserver_id = id,
        id = row.id,
        status = o.status,
        "smsserver_out outcome written"
    );
    Ok(1)
}
