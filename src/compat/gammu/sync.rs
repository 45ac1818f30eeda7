//! The task that keeps gammu's tables and smsgw's outbox in step: every poll it
//! queues the gammu rows smsgw does not have yet, writes back the outcome of
//! those that are final, and copies delivery reports onto `sentitems`. Every
//! step is idempotent (see the module above), so a crash anywhere is undone by
//! the next pass, and two smsgw instances on one gammu database agree.

use super::db::{GammuDb, Slice, LOCK_AHEAD};
use super::{
    awaiting_key, bare_key, dedupe_key, delivery_update, inbox_item, phones, pickup, sent_items,
    Awaiting, Pickup, Schema, SentPart, SUPPORTED_VERSIONS,
};
use crate::compat::{Layer, Rotor, Saved, SETTLED};
use crate::modem::Fleet;
use crate::store::{PartReport, Store, StoreError};
use chrono::{DateTime, Duration, Local, Utc};
use std::collections::{BTreeMap, HashMap};
use tracing::{info, warn};

/// Rows read from gammu's outbox per pass, in each slice.
const BATCH: u32 = 500;
/// How far back `sentitems` rows are watched for their delivery reports, and
/// how far back a first run copies smsgw's inbox.
const REPORT_WINDOW: Duration = Duration::days(3);

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
            "gammu's tables are schema version {v}; smsgw reads versions {SUPPORTED_VERSIONS:?} (gammu 1.42 and 1.44)"
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

/// The gammu layer: its connections and what it remembers between passes.
pub struct Gammu {
    pub store: Store,
    pub db: GammuDb,
    pub fleet: Fleet,
    /// The last smsgw inbox row copied (kept in `compat_cursors`).
    pub inbox: Saved,
    /// Where the walk through smsgw's locked rows has got to.
    pub ours: Rotor,
    /// Messages copied per modem since the start (`phones.Received`).
    pub received: HashMap<String, i64>,
    /// When the `phones` rows were last refreshed.
    pub phones_at: Option<DateTime<Utc>>,
    /// Which schema-18 columns the tables have.
    pub schema: Schema,
}

impl Gammu {
    pub async fn new(store: Store, db: GammuDb, fleet: Fleet) -> Result<Gammu, StoreError> {
        let inbox = Saved::load(&store, "gammu:inbox", 0).await?;
        let schema = db.schema().await?;
        Ok(Gammu {
            schema,
            store,
            db,
            fleet,
            inbox,
            ours: Rotor::default(),
            received: HashMap::new(),
            phones_at: None,
        })
    }
}

impl Layer for Gammu {
    const NAME: &'static str = "the gammu tables";
    async fn pass(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        pass(self, now).await.map(|_| ())
    }
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
pub async fn pass(g: &mut Gammu, now: DateTime<Utc>) -> Result<Pass, StoreError> {
    let mut done = Pass::default();
    let (store, db) = (&g.store, &g.db);
    if g.phones_at.is_none_or(|t| now - t >= PHONES_EVERY) {
        let statuses: Vec<_> = g.fleet.list().iter().map(|h| h.status()).collect();
        for ph in phones(&statuses, &g.received, now, PHONES_EVERY) {
            // A row gammu's table refuses (a column too short for it) must not
            // stop the outbox behind it.
            if let Err(e) = db.refresh_phone(&ph).await {
                if e.is_transient() {
                    return Err(e);
                }
                warn!(modem = %ph.id, error = %e, "phones row not refreshed");
            }
        }
        g.phones_at = Some(now);
    }
    for e in db.outbox(Slice::New { now }, &g.schema, BATCH).await? {
        let r = new_row(store, db, &e, now, &mut done).await;
        ends_alone(r, e.id)?;
    }
    let ours = db
        .outbox(
            Slice::Ours {
                now,
                after: g.ours.after,
            },
            &g.schema,
            BATCH,
        )
        .await?;
    g.ours.advance(ours.last().map(|e| e.id), ours.len(), BATCH);
    for e in ours {
        let r = our_row(store, db, &e, now, &mut done).await;
        ends_alone(r, e.id)?;
    }
    let mut by_key: BTreeMap<String, Vec<Awaiting>> = BTreeMap::new();
    for a in db.awaiting(now - REPORT_WINDOW).await? {
        by_key.entry(awaiting_key(&a)).or_default().push(a);
    }
    for (key, waiting) in by_key {
        let row = match store.by_dedupe_key(&key).await? {
            Some(r) => Some(r),
            // Its InsertIntoDB was not a time (MySQL's zero date): queued
            // under the key without one, and sentitems got the send time.
            None => store.by_dedupe_key(&bare_key(waiting[0].id)).await?,
        };
        let Some(row) = row else {
            continue;
        };
        let parts = store.part_reports(row.id).await?;
        for a in waiting {
            let Some(p) = parts.iter().find(|p| i64::from(p.part.seq) == a.seq) else {
                continue;
            };
            if let Some((status, at, err)) = delivery_update(&sent_part(p)) {
                let r = db.set_delivery(&a, status, at.as_deref(), err).await;
                ends_alone(r, a.id)?;
                done.reports += 1;
            }
        }
    }
    let since = if g.inbox.is_first() {
        now - REPORT_WINDOW
    } else {
        DateTime::<Utc>::UNIX_EPOCH
    };
    for (id, m) in store
        .inbox_after(g.inbox.value, since, now - SETTLED, i64::from(BATCH))
        .await?
    {
        match db.insert_inbox(&inbox_item(id, &m), &g.schema).await {
            Ok(true) => {
                info!(id, "incoming message copied to gammu's inbox");
                *g.received.entry(m.modem.clone()).or_default() += 1;
                done.received += 1;
            }
            Ok(false) => {}
            Err(e) if e.is_transient() => return Err(e),
            // gammu's table refuses it (a NUL, a column too short): it stays
            // in smsgw's own inbox, and the messages after it go on.
            Err(e) => warn!(id, error = %e, "incoming message not copied to gammu's inbox"),
        }
        g.inbox.value = id;
        g.inbox.save(store).await?;
    }
    Ok(done)
}

/// A row whose statement fails for a reason of its own (a value gammu's
/// table refuses) ends alone: logged, tried again at the next pass, and the
/// rows behind it go on. Only an error of the connection stops the pass.
fn ends_alone(r: Result<(), StoreError>, gammu_id: i64) -> Result<(), StoreError> {
    match r {
        Err(e) if e.is_transient() => Err(e),
        Err(e) => {
            warn!(gammu_id, error = %e, "gammu row not handled: tried again at the next pass");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// A row smsgw has not locked: queued once it holds gammu's lock.
async fn new_row(
    store: &Store,
    db: &GammuDb,
    e: &super::Entry,
    now: DateTime<Utc>,
    done: &mut Pass,
) -> Result<(), StoreError> {
    match store.by_dedupe_key(&dedupe_key(e)).await? {
        None => take(store, db, e, now, done, false).await,
        // smsgw has a message with this key, final, and the row is not
        // locked: not a row smsgw left (it locks before it queues) but a new
        // one reusing an ID, with an InsertIntoDB that does not tell them
        // apart. It cannot be queued under the same key: it ends with the
        // reason, never taken for the message already sent.
        Some(row) if row.state.is_final() && super::unlocked(e, now) => {
            if !db.claim(e.id, now, now + LOCK_AHEAD).await? {
                return Ok(());
            }
            done.rejected += 1;
            let why = format!(
                "ID {} and InsertIntoDB {:?} are those of a message smsgw already ended (its id {}): write the row with its own InsertIntoDB",
                e.id,
                e.insert_into_db.as_deref().unwrap_or("NULL"),
                row.id
            );
            reject(db, e, &why, now, "its ID comes round again").await
        }
        // smsgw's lock running out (or a row queued by an earlier smsgw
        // that locked after queueing): locked again, written back if final.
        Some(row) => {
            db.stamp(e.id, now + LOCK_AHEAD).await?;
            done.written_back += write_back(store, db, e, &row, now).await?;
            Ok(())
        }
    }
}

/// A row smsgw has locked: its outcome written back once final, or queued if
/// smsgw was killed between the lock and the queueing.
async fn our_row(
    store: &Store,
    db: &GammuDb,
    e: &super::Entry,
    now: DateTime<Utc>,
    done: &mut Pass,
) -> Result<(), StoreError> {
    match store.by_dedupe_key(&dedupe_key(e)).await? {
        Some(row) => {
            done.written_back += write_back(store, db, e, &row, now).await?;
            Ok(())
        }
        None => take(store, db, e, now, done, true).await,
    }
}

/// A row smsgw has no message for: queued, or rejected, once smsgw holds
/// gammu's lock on it (`locked`: it already does). The lock is gammu's own
/// compare-and-set on `SendingTimeOut`: a gammu-smsd running beside smsgw
/// that took the row since it was read keeps it. A reject is locked first
/// too, so that one gammu's table refuses to take is tried again from the
/// walked slice, never in front of the new rows.
async fn take(
    store: &Store,
    db: &GammuDb,
    e: &super::Entry,
    now: DateTime<Utc>,
    done: &mut Pass,
    locked: bool,
) -> Result<(), StoreError> {
    let p = pickup(e, now, &Local);
    if p == Pickup::Wait {
        return Ok(());
    }
    if !locked && !db.claim(e.id, now, now + LOCK_AHEAD).await? {
        info!(
            gammu_id = e.id,
            "gammu outbox row locked by another daemon: left to it"
        );
        return Ok(());
    }
    match p {
        Pickup::Queue(m) => {
            if !locked {
                crate::failpoint::hit("gammu_after_claim");
            }
            queue(store, db, e, &m, now, done).await
        }
        Pickup::Reject(why) => {
            done.rejected += 1;
            reject(db, e, &why, now, "it cannot be sent").await
        }
        Pickup::Wait => Ok(()),
    }
}

/// Queues a row smsgw holds the lock of (a repeat finds it by its key).
async fn queue(
    store: &Store,
    db: &GammuDb,
    e: &super::Entry,
    m: &crate::store::NewMessage,
    now: DateTime<Utc>,
    done: &mut Pass,
) -> Result<(), StoreError> {
    match store.enqueue(m).await {
        Ok(q) => {
            crate::failpoint::hit("gammu_after_enqueue");
            info!(gammu_id = e.id, id = q.id, "gammu outbox row queued");
            done.queued += 1;
            Ok(())
        }
        Err(err) if err.is_transient() => Err(err),
        // A value smsgw's own table refuses (too long, a time out of range,
        // a NUL): this row ends alone, the rest go on.
        Err(err) => {
            done.rejected += 1;
            reject(db, e, &err.to_string(), now, "smsgw's outbox refused it").await
        }
    }
}

/// A row that will not be sent goes where gammu puts it: `sentitems` with
/// `Status = 'Error'`, its `outbox` rows deleted.
async fn reject(
    db: &GammuDb,
    e: &super::Entry,
    why: &str,
    now: DateTime<Utc>,
    because: &str,
) -> Result<(), StoreError> {
    warn!(gammu_id = e.id, reason = %why, "gammu outbox row rejected ({because}): moved to sentitems with Status Error");
    if let Some(mut items) = sent_items(e, None, &[], now) {
        if let Err(err) = db.write_back(e.id, &items).await {
            if err.is_transient() {
                return Err(err);
            }
            // The text itself is what gammu's table refuses (too long for
            // it): the row goes with the reason in smsgw's log, without it.
            warn!(gammu_id = e.id, error = %err, "sentitems refused the row's text: written without it");
            for it in &mut items {
                it.text.clear();
                it.text_decoded.clear();
                it.udh.clear();
            }
            db.write_back(e.id, &items).await?;
        }
    }
    Ok(())
}

/// Writes the outcome of a row smsgw has, once it is final; returns 1 if it
/// wrote one.
async fn write_back(
    store: &Store,
    db: &GammuDb,
    e: &super::Entry,
    row: &crate::store::OutboxRow,
    now: DateTime<Utc>,
) -> Result<u32, StoreError> {
    let parts: Vec<SentPart> = store
        .part_reports(row.id)
        .await?
        .iter()
        .map(sent_part)
        .collect();
    let Some(items) = sent_items(e, Some(row), &parts, now) else {
        return Ok(0);
    };
    db.write_back(e.id, &items).await?;
    info!(
        gammu_id = e.id,
        id = row.id,
        state = row.state.as_str(),
        "gammu outcome written to sentitems"
    );
    Ok(1)
}
