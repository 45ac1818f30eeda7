//! The task that keeps SMSServer's tables and smsgw in step: every poll it
//! queues `U` rows and marks them `Q`, writes the outcome of final ones (`S`
//! or `F`), and copies received messages, status reports and calls. Every
//! step is idempotent (see the module above).

use super::db::SmsServerDb;
use super::{call, dedupe_key, inbound, outcome, pickup, status_report, Outcome};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;
use tracing::{info, warn};

const BATCH: u32 = 500;
/// How far back sent rows are watched for their status reports, and incoming
/// messages are looked at again after a restart.
const WINDOW: Duration = Duration::days(3);

/// Connects and checks that SMSServer's three tables are there.
pub async fn open(url: &str) -> anyhow::Result<SmsServerDb> {
    let db = SmsServerDb::connect_smsserver(url).await?;
    db.smsserver_pending(1)
        .await
        .map_err(|e| anyhow::anyhow!("reading smsserver_out: {e}"))?;
    Ok(db)
}

/// What the task remembers between passes.
#[derive(Debug, Default, Clone)]
pub struct Cursor {
    pub inbox_after: i64,
    pub calls_after: i64,
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

pub async fn pass(
    store: &Store,
    db: &SmsServerDb,
    cursor: &mut Cursor,
    now: DateTime<Utc>,
) -> Result<Pass, StoreError> {
    let mut done = Pass::default();
    for r in db.smsserver_pending(BATCH).await? {
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
                        let o = Outcome {
                            status: "F",
                            sent_date: None,
                            ref_no: None,
                            errors: 1,
                        };
                        db.smsserver_outcome(r.id, &o).await?;
                        done.finished += 1;
                    }
                },
                Err(why) => {
                    warn!(smsserver_id = r.id, reason = %why, "smsserver_out row failed (F) without being sent");
                    let o = Outcome {
                        status: "F",
                        sent_date: None,
                        ref_no: None,
                        errors: 1,
                    };
                    db.smsserver_outcome(r.id, &o).await?;
                    done.finished += 1;
                }
            },
            Some(row) => {
                if r.status.as_deref() == Some("U") {
                    db.smsserver_queued(r.id).await?;
                }
                let parts = store.part_reports(row.id).await?;
                if let Some(o) = outcome(&row, &parts) {
                    db.smsserver_outcome(r.id, &o).await?;
                    info!(
                        smsserver_id = r.id,
                        id = row.id,
                        status = o.status,
                        "smsserver_out outcome written"
                    );
                    done.finished += 1;
                }
            }
        }
    }
    for r in db.smsserver_reporting(now - WINDOW).await? {
        let Some(row) = store.by_dedupe_key(&dedupe_key(&r)).await? else {
            continue;
        };
        let recipient = r.recipient.clone().unwrap_or_default();
        for p in store.part_reports(row.id).await? {
            if let Some(s) = status_report(&recipient, &p) {
                match db.smsserver_insert_in(&s).await {
                    Ok(true) => done.reports += 1,
                    Ok(false) => {}
                    Err(e) if e.is_transient() => return Err(e),
                    Err(e) => {
                        warn!(smsserver_id = r.id, error = %e, "status report not copied to smsserver_in")
                    }
                }
            }
        }
    }
    for (id, m) in store
        .inbox_after(cursor.inbox_after, now - WINDOW, i64::from(BATCH))
        .await?
    {
        match db.smsserver_insert_in(&inbound(&m, now)).await {
            Ok(true) => done.received += 1,
            Ok(false) => {}
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => warn!(id, error = %e, "incoming message not copied to smsserver_in"),
        }
        cursor.inbox_after = id;
    }
    for (id, c) in store
        .calls_after(cursor.calls_after, i64::from(BATCH))
        .await?
    {
        match db.smsserver_insert_call(&call(&c)).await {
            Ok(true) => done.calls += 1,
            Ok(false) => {}
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => warn!(id, error = %e, "call not copied to smsserver_calls"),
        }
        cursor.calls_after = id;
    }
    Ok(done)
}

/// Runs passes every `poll` until `stop`; a failing pass is logged (once a
/// minute while it fails the same way) and tried again.
pub async fn run(
    store: Store,
    db: SmsServerDb,
    poll: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut last_error: Option<(String, std::time::Instant)> = None;
    let mut cursor = Cursor::default();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        match pass(&store, &db, &mut cursor, Utc::now()).await {
            Ok(_) => last_error = None,
            Err(e) => {
                let msg = e.to_string();
                let repeat = last_error.as_ref().is_some_and(|(m, at)| {
                    *m == msg && at.elapsed() < std::time::Duration::from_secs(60)
                });
                if !repeat {
                    warn!(error = %msg, "SMSServer tables: pass failed; trying again");
                    last_error = Some((msg, std::time::Instant::now()));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => {}
        }
    }
}
