//! Drop-in layers for the tables of the tools branches are migrating from.
//!
//! Each layer is a translator at the edge: it reads another tool's tables,
//! queues what it finds in smsgw's own outbox (so every guarantee of the core
//! applies: limits, quiet hours, retries, ambiguity, no double send), and writes
//! the outcomes back as that tool would. The core never knows the layer exists.
//!
//! - [`db`]: another tool's database on any backend (pools, quoting, times).
//! - [`gammu`]: gammu-smsd's SQL tables (`outbox`, `outbox_multipart`,
//!   `sentitems`, `inbox`, `phones`), schema versions 17 and 18.
//!
//! Here: [`Layer`] and [`run`], the one loop both layers run in; [`Rotor`],
//! the walk through rows a layer holds, a batch per pass; [`Saved`], a cursor
//! into smsgw's own rows kept in `compat_cursors`.
//! - [`smsserver`]: SMSLib SMSServer's (金笛's) `smsserver_out`, `smsserver_in`
//!   and `smsserver_calls`.

pub mod db;
pub mod gammu;
pub mod smsserver;

use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, warn};

/// A layer's work: one pass over its tables at `now`. Every step of a pass
/// is idempotent, so a pass cut short anywhere (an error, a kill) is finished
/// by the next.
pub trait Layer {
    /// For the logs ("the gammu tables"), and the name of the layer's lock.
    const NAME: &'static str;
    fn pass(&mut self, now: DateTime<Utc>) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// How often a standing-by instance tries the layer's lock, and the holder
/// checks it still has it.
const LOCK_EVERY: Duration = Duration::from_secs(5);

/// Runs a layer's passes every `poll` until `stop`, on one instance at a time:
/// the layer holds a lock in smsgw's database (an advisory lock on
/// PostgreSQL, a named lock on MariaDB), and another instance on the same
/// database stands by until it is free. Two copying at once would each write
/// a message, and a reader deleting between the two would get it twice.
/// `make` builds the layer once the lock is held, so it starts from the
/// cursors its predecessor saved. A failing pass is logged (at most once a
/// minute while it keeps failing the same way) and tried again at the next
/// poll: another tool's database being away never stops smsgw's own sending.
pub async fn run<L, F, Fut>(
    store: Store,
    mut make: F,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String>
where
    L: Layer,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<L, StoreError>>,
{
    let mut last_error: Option<(String, Instant)> = None;
    let note = |last: &mut Option<(String, Instant)>, e: &StoreError, what: &str| {
        let msg = e.to_string();
        let repeat = last
            .as_ref()
            .is_some_and(|(m, at)| *m == msg && at.elapsed() < Duration::from_secs(60));
        if !repeat {
            warn!(error = %msg, transient = e.is_transient(), "{}: {what}; trying again", L::NAME);
            *last = Some((msg, Instant::now()));
        }
    };
    let mut standing_by = false;
    loop {
        // The lock, then the layer.
        let (mut lock, mut layer) = loop {
            if *stop.borrow() {
                return Ok(());
            }
            match store.lock_instance(&format!("layer {}", L::NAME)).await {
                Ok(Some(lock)) => match make().await {
                    Ok(layer) => break (lock, layer),
                    Err(e) => note(&mut last_error, &e, "cannot start"),
                },
                Ok(None) => {
                    if !standing_by {
                        info!(
                            "{}: another smsgw instance serves them; standing by",
                            L::NAME
                        );
                        standing_by = true;
                    }
                }
                Err(e) => note(&mut last_error, &e, "cannot take the layer's lock"),
            }
            tokio::select! {
                _ = tokio::time::sleep(LOCK_EVERY) => {}
                _ = stop.changed() => {}
            }
        };
        if standing_by {
            info!("{}: the other instance let go; serving them", L::NAME);
            standing_by = false;
        }
        let mut checked = Instant::now();
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            if checked.elapsed() >= LOCK_EVERY {
                if !lock.alive().await {
                    warn!(
                        "{}: the layer's lock was lost with its session; taking it again",
                        L::NAME
                    );
                    break;
                }
                checked = Instant::now();
            }
            match layer.pass(Utc::now()).await {
                Ok(()) => last_error = None,
                Err(e) => note(&mut last_error, &e, "pass failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// A walk through rows in id order, one batch per pass, that starts again
/// from the first once a batch comes back short: every row is visited
/// however many there are, and a pass reads at most one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rotor {
    pub after: i64,
}

impl Rotor {
    /// After a batch of `got` rows (of `limit` asked) ending at `last`.
    pub fn advance(&mut self, last: Option<i64>, got: usize, limit: u32) {
        self.after = match last {
            Some(id) if got >= limit as usize => id,
            _ => 0,
        };
    }
}

/// A position in smsgw's own rows (inbox, calls) that a layer has copied up
/// to, kept in `compat_cursors`: a restart goes on from it, so a row the other
/// tool's reader has processed and deleted is never copied again.
#[derive(Debug, Clone)]
pub struct Saved {
    name: String,
    pub value: i64,
    /// A second key within one value (0 where unused): the two are written
    /// together.
    pub part: i64,
    /// What is in `compat_cursors`, or the first value of a layer that has
    /// never moved this cursor.
    stored: (i64, i64),
    first_run: bool,
}

/// How old a row of smsgw's must be before a layer copies it: rows written
/// by two instances at once may commit out of id order, and one that
/// commits a moment after a higher id was read would be passed over.
/// Longer than a write may wait for the database (10 s) and than the clock
/// skew smsgw accepts between instances.
pub const SETTLED: chrono::Duration = chrono::Duration::seconds(15);

impl Saved {
    /// The cursor `name`, or `first` for a layer that has never moved it.
    pub async fn load(store: &Store, name: &str, first: i64) -> Result<Saved, StoreError> {
        let stored = store.cursor(name).await?;
        let (value, part) = stored.unwrap_or((first, 0));
        Ok(Saved {
            name: name.to_string(),
            value,
            part,
            stored: (value, part),
            first_run: stored.is_none(),
        })
    }

    /// Whether the layer has never moved this cursor: it looks back only a
    /// few days, and keeps looking back so until it has copied something.
    pub fn is_first(&self) -> bool {
        self.first_run
    }

    /// Writes the cursor if it moved (once per row copied: a kill then
    /// repeats at most the row being copied, which the copy's own check
    /// recognises).
    pub async fn save(&mut self, store: &Store) -> Result<(), StoreError> {
        let now = (self.value, self.part);
        if self.stored != now {
            store.set_cursor(&self.name, now.0, now.1).await?;
            self.stored = now;
            self.first_run = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Rotor;

    #[test]
    fn the_rotor_visits_every_row_then_starts_again() {
        let mut r = Rotor::default();
        r.advance(Some(500), 500, 500);
        assert_eq!(r.after, 500, "a full batch: go on after it");
        r.advance(Some(730), 230, 500);
        assert_eq!(r.after, 0, "a short batch: the end, start again");
        r.advance(None, 0, 500);
        assert_eq!(r.after, 0);
    }
}
