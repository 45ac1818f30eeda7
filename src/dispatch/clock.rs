//! The database's clock, as the dispatcher reads it. Leases are written and
//! compared on it: two instances sharing a database whose machine clocks
//! disagree must never both think they hold a row. The offset between this
//! machine's clock and the database's is measured at start and again at every
//! housekeeping, halfway through the round trip.
//!
//! `[debug] clock_offset_secs` (tests only) skews this machine's clock as a
//! badly set server would; the measured offset cancels it.

use chrono::{DateTime, Duration, Utc};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// This machine's clock (optionally skewed) corrected to the database's.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Added to the system clock: a wrong machine clock (tests).
    skew_ms: i64,
    /// Database minus (skewed) local, measured.
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn new(skew: Duration) -> Clock {
        Clock {
            skew_ms: skew.num_milliseconds(),
            offset_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    /// This machine's idea of the time (what quiet hours and logs use).
    pub fn local(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.skew_ms)
    }

    /// The database's time now, as last measured.
    pub fn db(&self) -> DateTime<Utc> {
        self.local() + Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Takes a measurement: the database said `db` between `before` and
    /// `after` on the local clock.
    pub fn observe(&self, before: DateTime<Utc>, db: DateTime<Utc>, after: DateTime<Utc>) {
        let mid = before + (after - before) / 2;
        self.offset_ms
            .store((db - mid).num_milliseconds(), Ordering::Relaxed);
    }

    /// The measured offset (database minus local).
    pub fn offset(&self) -> Duration {
        Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skewed_machine_still_reads_the_database_clock() {
        let c = Clock::new(Duration::minutes(10));
        let before = c.local();
        // The database is right; this machine is 10 minutes ahead.
        let db = Utc::now();
        let after = c.local();
        c.observe(before, db, after);
        assert!((c.db() - Utc::now()).num_milliseconds().abs() < 1000);
        assert!(
            (c.offset() + Duration::minutes(10))
                .num_milliseconds()
                .abs()
                < 1000
        );
    }
}
