//! What the dispatcher shares with the outside while it runs: operators' pauses
//! (from the status socket), a wake-up for "something changed, look again", the
//! dispatcher's heartbeat (systemd's watchdog pings only while it beats), and each
//! modem's usage today against its quota.
//!
//! Plain synchronous state behind short locks: readers (the socket, the watchdog)
//! never wait on the dispatcher's I/O.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// One modem's usage as the dispatcher counts it (parts, since local midnight).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub sent_today: u32,
    pub failed_today: u32,
    /// The modem's daily quota (0 = unlimited).
    pub per_day: u32,
    /// A message is on its way through this modem now.
    pub busy: bool,
}

#[derive(Debug)]
pub struct Steering {
    paused_all: AtomicBool,
    paused: Mutex<BTreeSet<String>>,
    wake: Notify,
    beat: Mutex<Instant>,
    /// Since when the recorder has been working on one thing (None: idle).
    inbound_busy: Mutex<Option<Instant>>,
    usage: Mutex<BTreeMap<String, Usage>>,
    unrecorded: AtomicUsize,
}

impl Default for Steering {
    fn default() -> Self {
        Steering {
            paused_all: AtomicBool::new(false),
            paused: Mutex::new(BTreeSet::new()),
            wake: Notify::new(),
            beat: Mutex::new(Instant::now()),
            inbound_busy: Mutex::new(None),
            usage: Mutex::new(BTreeMap::new()),
            unrecorded: AtomicUsize::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the status view down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Steering {
    /// Pauses one modem, or all sending with `None`. Sends in flight finish.
    pub fn pause(&self, modem: Option<&str>) {
        match modem {
            None => self.paused_all.store(true, Ordering::SeqCst),
            Some(m) => {
                lock(&self.paused).insert(m.to_string());
            }
        }
    }

    /// Resumes one modem, or all sending with `None` (which also lifts every
    /// per-modem pause: "resume everything" means everything).
    pub fn resume(&self, modem: Option<&str>) {
        match modem {
            None => {
                self.paused_all.store(false, Ordering::SeqCst);
                lock(&self.paused).clear();
            }
            Some(m) => {
                lock(&self.paused).remove(m);
            }
        }
        self.wake();
    }

    pub fn all_paused(&self) -> bool {
        self.paused_all.load(Ordering::SeqCst)
    }

    /// Whether this modem gets no new work (paused itself, or all sending paused).
    pub fn is_paused(&self, modem: &str) -> bool {
        self.all_paused() || lock(&self.paused).contains(modem)
    }

    pub fn paused_modems(&self) -> Vec<String> {
        lock(&self.paused).iter().cloned().collect()
    }

    /// Asks the dispatcher to look at the queue again now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// The dispatcher is alive and making progress.
    pub fn beat(&self) {
        *lock(&self.beat) = Instant::now();
    }

    pub fn since_beat(&self) -> Duration {
        lock(&self.beat).elapsed()
    }

    /// The recorder of modem events starts on something (or made progress on
    /// it): it waits for events when idle, so only work that does not finish
    /// counts as stuck.
    pub fn inbound_working(&self) {
        *lock(&self.inbound_busy) = Some(Instant::now());
    }

    /// The recorder is idle again (waiting for events is not being stuck).
    pub fn inbound_idle(&self) {
        *lock(&self.inbound_busy) = None;
    }

    /// How long the recorder has been on its current work without progress.
    pub fn since_inbound_beat(&self) -> Duration {
        lock(&self.inbound_busy).map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Modem events (reports, incoming messages) held until the database takes them.
    pub fn set_unrecorded(&self, n: usize) {
        self.unrecorded.store(n, Ordering::SeqCst);
    }

    pub fn unrecorded(&self) -> usize {
        self.unrecorded.load(Ordering::SeqCst)
    }

    pub fn set_usage(&self, modem: &str, u: Usage) {
        lock(&self.usage).insert(modem.to_string(), u);
    }

    pub fn usage(&self, modem: &str) -> Usage {
        lock(&self.usage).get(modem).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_per_modem_and_all() {
        let s = Steering::default();
        assert!(!s.is_paused("m1"));
        s.pause(Some("m1"));
        assert!(s.is_paused("m1") && !s.is_paused("m2"));
        s.pause(None);
        assert!(s.is_paused("m2"));
        s.resume(Some("m1"));
        assert!(s.is_paused("m1"), "all sending is still paused");
        s.pause(Some("m2"));
        s.resume(None);
        assert!(!s.is_paused("m1") && !s.is_paused("m2"));
        assert!(s.paused_modems().is_empty());
    }

    #[tokio::test]
    async fn wake_is_not_lost_when_nobody_waits_yet() {
        let s = Steering::default();
        s.wake();
        tokio::time::timeout(Duration::from_secs(1), s.woken())
            .await
            .expect("a wake before the wait is kept");
    }
}
