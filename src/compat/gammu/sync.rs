//! The task that keeps gammu's tables and smsgw's outbox in step: every poll it
//! queues the gammu rows smsgw does not have yet, writes back the outcome of
//! those that are final, and copies delivery reports onto `sentitems`. Every
//! step is idempotent (see the module above), so a crash anywhere is undone by
//! the next pass, and two smsgw instances on one gammu database agree.

use super::db::GammuDb;
use super::{
    awaiting_key, dedupe_key, delivery_update, inbox_item, phones, pickup, sent_items, Awaiting,
    Pickup, SentPart, SUPPORTED_VERSIONS,
};
use crate::modem::Fleet;
use crate::store::{PartReport, Store, StoreError};
use chrono::{DateTime, Duration, Local, Utc};
use std::collections::{BTreeMap, HashMap};
use tokio::sync::watch;
use tracing::{info, warn};

/// Rows read from gammu's outbox per pass.
const BATCH: u32 = 500;
/// How far back `sentitems` rows are watched for their delivery reports.
const REPORT_WINDOW: Duration = Duration::days(3);
/// How long gammu's `SendingTimeOut` lock is set ahead once smsgw has a row.
const LOCK_AHEAD: Duration = Duration::days(365);

/// Connects to gammu's database and checks its schema version.
pub async fn open(url: &str) -> anyhow::Result<GammuDb> {
    let db = GammuDb::connect_gammu(url).await?;
    let v = db
        .version()
        .await
        .map_err(|e| anyhow::anyhow!("reading gammu's schema version (table gammu): {e}"))?;
    match v {
        Some(v) if SUPPORTED_VERSIONS.contains(&v) => Ok(db),
        Some(v) => anyhow::bail!(
            "gammu's tables are schema version {v}; smsgw reads version {SUPPORTED_VERSIONS:?} (gammu 1.42)"
        ),
        None => anyhow::bail!("the gammu table holds no schema version"),
    }
}

/// What one pass did (logged, and returned for tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub queued: u32,
    pub written_back: u32,
    pub rejected: u32,
    pub reports: u32,
    pub received: u32,
}

/// What the task remembers between passes: the last smsgw inbox row copied
/// (after a restart, the last three days are looked at again, and what is
/// already in gammu's inbox is recognised).
#[derive(Debug, Default, Clone)]
pub struct Cursor {
    pub inbox_after: i64,
    /// Messages copied per modem since the start (`phones.Received`).
    pub received: HashMap<String, i64>,
    /// When the `phones` rows were last refreshed.
    pub phones_at: Option<DateTime<Utc>>,
}

/// How often the `phones` rows are refreshed (gammu-smsd: every
/// `StatusFrequency`, 60 s by default; front-ends show a phone as connected
/// while its `TimeOut` lies ahead).
pub const PHONES_EVERY: Duration = Duration::seconds(10);

fn sent_part(r: &PartReport) -> SentPart {
    SentPart {
        seq: i64::from(r.part.seq),
        modem: r.part.modem.clone(),
        mr: r.part.mr,
        submitted_at: r.part.submitted_at,
        status: r.part.status,
        report_at: r.report_at,
        tp_status: r.tp_status.map(i64::from),
    }
}

/// One pass over gammu's tables at `now`.
pub async fn pass(
    store: &Store,
    db: &GammuDb,
    fleet: &Fleet,
    cursor: &mut Cursor,
    now: DateTime<Utc>,
) -> Result<Pass, StoreError> {
    let mut done = Pass::default();
    if cursor.phones_at.is_none_or(|t| now - t >= PHONES_EVERY) {
        let statuses: Vec<_> = fleet.list().iter().map(|h| h.status()).collect();
        for ph in phones(&statuses, &cursor.received, now, PHONES_EVERY) {
            // A row gammu's table refuses (a column too short for it) must not
            // stop the outbox behind it.
            if let Err(e) = db.refresh_phone(&ph).await {
                if e.is_transient() {
                    return Err(e);
                }
                warn!(modem = %ph.id, error = %e, "phones row not refreshed");
            }
        }
        cursor.phones_at = Some(now);
    }
    for e in db.outbox(BATCH).await? {
        let key = dedupe_key(&e);
        match store.by_dedupe_key(&key).await? {
            None => match pickup(&e, now, &Local) {
                Pickup::Queue(m) => match store.enqueue(&m).await {
                    Ok(q) => {
                        crate::failpoint::hit("gammu_after_enqueue");
                        db.stamp(e.id, now + LOCK_AHEAD).await?;
                        info!(gammu_id = e.id, id = q.id, "gammu outbox row queued");
                        done.queued += 1;
                    }
                    Err(err) if err.is_transient() => return Err(err),
                    // A value smsgw's own table refuses (too long, a time out
                    // of range, a NUL): this row ends alone, the rest go on.
                    Err(err) => {
                        warn!(gammu_id = e.id, reason = %err, "gammu outbox row rejected by smsgw's outbox: moved to sentitems with Status Error");
                        if let Some(items) = sent_items(&e, None, &[], now) {
                            db.write_back(e.id, &items).await?;
                        }
                        done.rejected += 1;
                    }
                },
                Pickup::Wait => {}
                Pickup::Reject(why) => {
                    warn!(gammu_id = e.id, reason = %why, "gammu outbox row rejected: moved to sentitems with Status Error");
                    if let Some(items) = sent_items(&e, None, &[], now) {
                        db.write_back(e.id, &items).await?;
                    }
                    done.rejected += 1;
                }
            },
            Some(row) => {
                let parts: Vec<SentPart> = store
                    .part_reports(row.id)
                    .await?
                    .iter()
                    .map(sent_part)
                    .collect();
                if let Some(items) = sent_items(&e, Some(&row), &parts, now) {
                    db.write_back(e.id, &items).await?;
                    info!(
                        gammu_id = e.id,
                        id = row.id,
                        state = row.state.as_str(),
                        "gammu outcome written to sentitems"
                    );
                    done.written_back += 1;
                }
            }
        }
    }
    let mut by_key: BTreeMap<String, Vec<Awaiting>> = BTreeMap::new();
    for a in db.awaiting(now - REPORT_WINDOW).await? {
        by_key.entry(awaiting_key(&a)).or_default().push(a);
    }
    for (key, waiting) in by_key {
        let Some(row) = store.by_dedupe_key(&key).await? else {
            continue;
        };
        let parts = store.part_reports(row.id).await?;
        for a in waiting {
            let Some(p) = parts.iter().find(|p| i64::from(p.part.seq) == a.seq) else {
                continue;
            };
            if let Some((status, at, err)) = delivery_update(&sent_part(p)) {
                db.set_delivery(&a, status, at.as_deref(), err).await?;
                done.reports += 1;
            }
        }
    }
    for (id, m) in store
        .inbox_after(cursor.inbox_after, now - REPORT_WINDOW, i64::from(BATCH))
        .await?
    {
        match db.insert_inbox(&inbox_item(&m)).await {
            Ok(true) => {
                info!(id, "incoming message copied to gammu's inbox");
                *cursor.received.entry(m.modem.clone()).or_default() += 1;
                done.received += 1;
            }
            Ok(false) => {}
            Err(e) if e.is_transient() => return Err(e),
            // gammu's table refuses it (a NUL, a column too short): it stays
            // in smsgw's own inbox, and the messages after it go on.
            Err(e) => warn!(id, error = %e, "incoming message not copied to gammu's inbox"),
        }
        cursor.inbox_after = id;
    }
    Ok(done)
}

/// Runs passes every `poll` until `stop`. A failing pass is logged (at most
/// once a minute while it keeps failing the same way) and tried again at the
/// next poll: gammu's database being away never stops smsgw's own sending.
pub async fn run(
    store: Store,
    db: GammuDb,
    fleet: Fleet,
    poll: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut last_error: Option<(String, std::time::Instant)> = None;
    let mut cursor = Cursor::default();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        match pass(&store, &db, &fleet, &mut cursor, Utc::now()).await {
            Ok(_) => last_error = None,
            Err(e) => {
                let msg = e.to_string();
                let repeat = last_error.as_ref().is_some_and(|(m, at)| {
                    *m == msg && at.elapsed() < std::time::Duration::from_secs(60)
                });
                if !repeat {
                    warn!(error = %msg, transient = e.is_transient(), "gammu tables: pass failed; trying again");
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
