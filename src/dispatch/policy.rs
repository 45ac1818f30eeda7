//! The dispatcher's decisions as pure functions of state and `now`: quiet hours,
//! retry backoff, rate windows, what a send failure means for the row, which modem
//! gets a message, and whether a reply is an opt-out. Tested with an injected clock.

use crate::at::classify::{FailureClass, SendFailure};
use crate::config::{parse_window, AmbiguousPolicy, Limits, Sending};
use crate::store::Completion;
use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use std::collections::{BTreeMap, VecDeque};

/// Quiet hours per category in one time zone.
#[derive(Debug, Clone)]
pub struct QuietHours {
    pub tz: Tz,
    /// Category -> (start, end) in minutes after local midnight; a window may cross midnight.
    pub windows: BTreeMap<String, (u32, u32)>,
}

impl QuietHours {
    pub fn from_config(c: &crate::config::QuietHours) -> Option<QuietHours> {
        Some(QuietHours {
            tz: c.timezone.parse().ok()?,
            windows: c
                .windows
                .iter()
                .map(|(k, v)| Some((k.clone(), parse_window(v)?)))
                .collect::<Option<_>>()?,
        })
    }

    /// If `category` is in its quiet window at `now`, when the window ends (UTC).
    pub fn held_until(&self, category: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let &(start, end) = self.windows.get(category)?;
        if start == end {
            return None;
        }
        let local = now.with_timezone(&self.tz);
        let minute = local.time().num_seconds_from_midnight() / 60;
        let quiet = if start < end {
            (start..end).contains(&minute)
        } else {
            minute >= start || minute < end
        };
        if !quiet {
            return None;
        }
        // The end is today if it is still ahead, else tomorrow.
        let end_time = NaiveTime::from_num_seconds_from_midnight_opt(end * 60, 0)?;
        let mut day = local.date_naive();
        if minute >= end {
            day = day.succ_opt()?;
        }
        let end_local = self
            .tz
            .from_local_datetime(&day.and_time(end_time))
            .earliest()?;
        Some(end_local.with_timezone(&Utc))
    }

    /// The start of the local day containing `now` (for daily limits), in UTC.
    pub fn day_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let local = now.with_timezone(&self.tz);
        let midnight = local
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists");
        self.tz
            .from_local_datetime(&midnight)
            .earliest()
            .map_or(now - Duration::hours(24), |t| t.with_timezone(&Utc))
    }

    /// The start of the next local day.
    pub fn next_day(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let local = now.with_timezone(&self.tz);
        let d = local.date_naive().succ_opt().unwrap_or(local.date_naive());
        let _ = d.weekday();
        self.tz
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
            .earliest()
            .map_or(now + Duration::hours(24), |t| t.with_timezone(&Utc))
    }
}

/// Exponential backoff with jitter: base * 2^(attempts-1), capped, then scaled by
/// a factor in [0.5, 1.0) derived from `seed` (deterministic for tests).
pub fn retry_delay(attempts: u32, base_secs: u64, max_secs: u64, seed: u64) -> Duration {
    let exp = base_secs.saturating_mul(1u64 << attempts.saturating_sub(1).min(30));
    let capped = exp.min(max_secs).max(1);
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    let factor = 0.5 + (x % 1000) as f64 / 2000.0;
    Duration::milliseconds((capped as f64 * 1000.0 * factor) as i64)
}

/// What a failed send means for the row.
pub fn failure_completion(
    f: &SendFailure,
    attempts_before: i32,
    sending: &Sending,
    now: DateTime<Utc>,
    seed: u64,
) -> Completion {
    let attempts_after = attempts_before as u32 + 1;
    let (max_attempts, ambiguous) = (sending.max_attempts, sending.ambiguous);
    let (base_secs, max_secs) = (sending.retry_base_secs, sending.retry_max_secs);
    match f.class {
        FailureClass::Permanent => Completion::Failed {
            error: f.reason.clone(),
        },
        FailureClass::Temporary if attempts_after >= max_attempts => Completion::Failed {
            error: format!("{} (gave up after {attempts_after} attempts)", f.reason),
        },
        FailureClass::Temporary => Completion::Retry {
            error: f.reason.clone(),
            due: now + retry_delay(attempts_after, base_secs, max_secs, seed),
            count_attempt: true,
        },
        // Not this message's fault: back at once, no attempt used (another modem may take it).
        FailureClass::Modem => Completion::Retry {
            error: f.reason.clone(),
            due: now + Duration::seconds(2),
            count_attempt: false,
        },
        FailureClass::Ambiguous => match ambiguous {
            AmbiguousPolicy::Hold => Completion::Ambiguous {
                error: f.reason.clone(),
            },
            AmbiguousPolicy::Resend if attempts_after >= max_attempts => Completion::Failed {
                error: format!("{} (gave up after {attempts_after} attempts)", f.reason),
            },
            AmbiguousPolicy::Resend => Completion::Retry {
                error: format!("{} (resending: policy ambiguous = resend)", f.reason),
                due: now + retry_delay(attempts_after, base_secs, max_secs, seed),
                count_attempt: true,
            },
        },
    }
}

/// The limits one rate window enforces (0 = unlimited), built from the
/// configuration once, at load and at SIGHUP: a modem's own, or the global one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowLimits {
    pub per_minute: u32,
    pub per_hour: u32,
    pub per_day: u32,
}

impl WindowLimits {
    /// A modem's window (`[limits]` or its `[[modem]]` override).
    pub fn modem(l: &Limits) -> WindowLimits {
        WindowLimits {
            per_minute: l.per_minute,
            per_hour: l.per_hour,
            per_day: l.per_day,
        }
    }

    /// All modems together (`[limits] global_per_minute`).
    pub fn global(l: &Limits) -> WindowLimits {
        WindowLimits {
            per_minute: l.global_per_minute,
            ..WindowLimits::default()
        }
    }
}

/// Sliding-window counts of parts sent (per modem, or globally): per minute,
/// hour and local day. Daily counts are seeded from the database on start, so
/// limits survive a restart.
///
/// Parts are counted when a message is handed to a modem ([`RateWindow::record`]),
/// not when the modem has finished: sends on several modems run at once, and each
/// routing decision must see the parts the others are sending. What did not go
/// out is given back afterwards ([`RateWindow::release`]).
#[derive(Debug, Clone, Default)]
pub struct RateWindow {
    recent: VecDeque<DateTime<Utc>>,
    today: u32,
    day_start: Option<DateTime<Utc>>,
}

impl RateWindow {
    pub fn seeded(today: u32, day_start: DateTime<Utc>) -> RateWindow {
        RateWindow {
            recent: VecDeque::new(),
            today,
            day_start: Some(day_start),
        }
    }

    fn roll(&mut self, now: DateTime<Utc>, day_start: DateTime<Utc>) {
        while self
            .recent
            .front()
            .is_some_and(|t| *t <= now - Duration::hours(1))
        {
            self.recent.pop_front();
        }
        if self.day_start != Some(day_start) {
            self.day_start = Some(day_start);
            self.today = 0;
        }
    }

    /// Whether `parts` more may go now under `limits`; if not, when to look again.
    ///
    /// A message with more parts than a limit (7 parts against `per_minute = 6`)
    /// goes out alone, once that window is empty: all parts of a message travel
    /// together through one modem, and holding it for a window that can never fit
    /// it would hold it forever.
    pub fn check(
        &mut self,
        limits: &WindowLimits,
        parts: u32,
        now: DateTime<Utc>,
        day_start: DateTime<Utc>,
        next_day: DateTime<Utc>,
    ) -> Result<(), DateTime<Utc>> {
        self.roll(now, day_start);
        let over = |count: u32, limit: u32| {
            limit > 0 && count + parts > limit && !(count == 0 && parts > limit)
        };
        if over(self.today, limits.per_day) {
            return Err(next_day);
        }
        let within =
            |span: Duration| self.recent.iter().filter(|t| **t > now - span).count() as u32;
        let oldest_within = |span: Duration| {
            self.recent
                .iter()
                .find(|t| **t > now - span)
                .copied()
                .unwrap_or(now)
                + span
        };
        if over(within(Duration::hours(1)), limits.per_hour) {
            return Err(oldest_within(Duration::hours(1)));
        }
        if over(within(Duration::minutes(1)), limits.per_minute) {
            return Err(oldest_within(Duration::minutes(1)));
        }
        Ok(())
    }

    /// Counts `parts` as sent at `now` (taken when the message is handed to a modem).
    pub fn record(&mut self, parts: u32, now: DateTime<Utc>, day_start: DateTime<Utc>) {
        self.roll(now, day_start);
        for _ in 0..parts {
            self.recent.push_back(now);
        }
        self.today += parts;
    }

    /// Gives back `parts` of those recorded at `at` that never went out (a send that
    /// failed before its last part). Parts recorded on a day that has rolled over
    /// are no longer in today's count.
    pub fn release(&mut self, parts: u32, at: DateTime<Utc>) {
        let mut left = parts;
        let mut i = self.recent.len();
        while left > 0 && i > 0 {
            i -= 1;
            if self.recent[i] == at {
                self.recent.remove(i);
                left -= 1;
            }
        }
        if self.day_start.is_some_and(|d| at >= d) {
            self.today = self.today.saturating_sub(parts);
        }
    }

    pub fn today(&self) -> u32 {
        self.today
    }
}

/// A modem as routing sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub ready: bool,
    pub busy: bool,
    pub group: Option<String>,
    /// Parts sent today (least-loaded first).
    pub load: u32,
    /// Whether its rate limits allow the message now.
    pub allowed: bool,
}

/// Picks the modem for a message: ready, idle, allowed by its limits, in the
/// row's group if it has one; least loaded first, then by id (stable).
pub fn route<'a>(candidates: &'a [Candidate], group: Option<&str>) -> Option<&'a Candidate> {
    candidates
        .iter()
        .filter(|c| c.ready && !c.busy && c.allowed)
        .filter(|c| group.is_none_or(|g| c.group.as_deref() == Some(g)))
        .min_by(|a, b| a.load.cmp(&b.load).then(a.id.cmp(&b.id)))
}

/// Folds full-width forms to ASCII, drops spaces and trailing punctuation, upper-cases:
/// `ｔｄ`, ` TD。`, `td!` all become `TD`.
pub fn normalise_reply(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .trim_end_matches(|c: char| c.is_ascii_punctuation() || "。！？，、".contains(c))
        .to_uppercase()
}

/// Whether a reply is an opt-out keyword.
pub fn is_opt_out(text: &str, keywords: &[String]) -> bool {
    let t = normalise_reply(text);
    !t.is_empty() && keywords.iter().any(|k| normalise_reply(k) == t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn shanghai() -> QuietHours {
        QuietHours::from_config(&crate::config::QuietHours::default()).unwrap()
    }

    #[test]
    fn quiet_hours_cross_midnight_in_the_local_zone() {
        let q = shanghai();
        // 22:30 Shanghai = 14:30 UTC: held until 08:00 Shanghai next day = 00:00 UTC.
        assert_eq!(
            q.held_until("greeting", at("2026-09-24T14:30:00Z")),
            Some(at("2026-09-25T00:00:00Z"))
        );
        // 07:59 Shanghai (23:59 UTC the day before): held one more minute.
        assert_eq!(
            q.held_until("greeting", at("2026-09-24T23:59:00Z")),
            Some(at("2026-09-25T00:00:00Z"))
        );
        // 08:00 sharp: open.
        assert_eq!(q.held_until("greeting", at("2026-09-25T00:00:00Z")), None);
        // 20:59 open, 21:00 held.
        assert_eq!(q.held_until("greeting", at("2026-09-25T12:59:00Z")), None);
        assert!(q
            .held_until("greeting", at("2026-09-25T13:00:00Z"))
            .is_some());
        // Reminders are never held; unknown categories neither.
        assert_eq!(q.held_until("reminder", at("2026-09-24T14:30:00Z")), None);
        assert_eq!(q.held_until("whatever", at("2026-09-24T14:30:00Z")), None);
    }

    #[test]
    fn quiet_hours_in_another_zone_and_a_daytime_window() {
        let c = crate::config::QuietHours {
            timezone: "Europe/Berlin".into(),
            windows: [("marketing".to_string(), "12:00-14:00".to_string())].into(),
        };
        let q = QuietHours::from_config(&c).unwrap();
        // 13:00 Berlin in winter = 12:00 UTC.
        assert_eq!(
            q.held_until("marketing", at("2026-01-10T12:00:00Z")),
            Some(at("2026-01-10T13:00:00Z"))
        );
        assert_eq!(q.held_until("marketing", at("2026-01-10T13:00:00Z")), None);
    }

    #[test]
    fn day_boundaries_are_local() {
        let q = shanghai();
        assert_eq!(
            q.day_start(at("2026-09-24T17:00:00Z")),
            at("2026-09-24T16:00:00Z")
        );
        assert_eq!(
            q.next_day(at("2026-09-24T15:59:59Z")),
            at("2026-09-24T16:00:00Z")
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let d: Vec<i64> = (1..=8)
            .map(|a| retry_delay(a, 30, 600, 7).num_seconds())
            .collect();
        for w in d.windows(2) {
            assert!(w[1] >= w[0] || w[1] * 2 >= 600, "{d:?}");
        }
        for a in 1..=20 {
            let s = retry_delay(a, 30, 600, a as u64).num_milliseconds();
            let nominal = (30i64 << (a - 1).min(30)).min(600) * 1000;
            assert!(
                s >= nominal / 2 && s < nominal,
                "attempt {a}: {s} vs {nominal}"
            );
        }
        assert_ne!(
            retry_delay(3, 30, 600, 1),
            retry_delay(3, 30, 600, 2),
            "jitter"
        );
    }

    #[test]
    fn rate_windows_and_the_day_boundary() {
        let q = shanghai();
        let lim = WindowLimits {
            per_minute: 2,
            per_hour: 3,
            per_day: 4,
        };
        let now = at("2026-09-24T15:50:00Z"); // 23:50 Shanghai
        let (ds, nd) = (q.day_start(now), q.next_day(now));
        let mut w = RateWindow::seeded(0, ds);
        assert!(w.check(&lim, 2, now, ds, nd).is_ok());
        w.record(2, now, ds);
        assert_eq!(
            w.check(&lim, 1, now, ds, nd),
            Err(now + Duration::minutes(1))
        );
        let later = now + Duration::minutes(2);
        w.record(1, later, ds);
        assert_eq!(
            w.check(&lim, 1, later, ds, nd),
            Err(now + Duration::hours(1))
        );
        // A restart seeded with today's count from the database: the day limit holds.
        let mut w = RateWindow::seeded(4, ds);
        assert_eq!(w.check(&lim, 1, now, ds, nd), Err(nd));
        // After local midnight the day count resets.
        let tomorrow = nd + Duration::minutes(1);
        assert!(w
            .check(
                &lim,
                1,
                tomorrow,
                q.day_start(tomorrow),
                q.next_day(tomorrow)
            )
            .is_ok());
    }

    #[test]
    fn parts_counted_at_hand_over_and_given_back_when_unsent() {
        let q = shanghai();
        let lim = WindowLimits {
            per_minute: 3,
            per_day: 10,
            ..Default::default()
        };
        let now = at("2026-09-24T02:00:00Z");
        let (ds, nd) = (q.day_start(now), q.next_day(now));
        let mut w = RateWindow::seeded(0, ds);
        // Two messages handed over at once (two modems): the second sees the first.
        assert!(w.check(&lim, 2, now, ds, nd).is_ok());
        w.record(2, now, ds);
        assert!(w.check(&lim, 2, now, ds, nd).is_err());
        assert!(w.check(&lim, 1, now, ds, nd).is_ok());
        w.record(1, now, ds);
        // The first message failed before either part went: both are given back.
        let later = now + Duration::seconds(5);
        w.release(2, now);
        assert_eq!(w.today(), 1);
        assert!(w.check(&lim, 2, later, ds, nd).is_ok());
        // Only entries of that hand-over are removed.
        w.record(2, later, ds);
        w.release(1, now);
        assert_eq!(w.today(), 2);
        assert_eq!(
            w.check(&lim, 2, later, ds, nd),
            Err(later + Duration::minutes(1)),
            "the remaining entries are the later ones"
        );
    }

    #[test]
    fn a_message_larger_than_a_limit_goes_alone_in_an_empty_window() {
        let q = shanghai();
        let lim = WindowLimits {
            per_minute: 6,
            ..Default::default()
        };
        let now = at("2026-09-24T02:00:00Z");
        let (ds, nd) = (q.day_start(now), q.next_day(now));
        let mut w = RateWindow::seeded(0, ds);
        assert!(w.check(&lim, 7, now, ds, nd).is_ok(), "never held forever");
        w.record(1, now, ds);
        assert_eq!(
            w.check(&lim, 7, now, ds, nd),
            Err(now + Duration::minutes(1)),
            "but not beside other parts"
        );
        let later = now + Duration::seconds(61);
        assert!(w.check(&lim, 7, later, ds, nd).is_ok());
        w.record(7, later, ds);
        assert!(w.check(&lim, 1, later, ds, nd).is_err());
    }

    #[test]
    fn failures_become_completions() {
        let now = Utc::now();
        let f = |class| SendFailure {
            class,
            reason: "r".into(),
        };
        let c = |class, attempts, pol| {
            let sending = Sending {
                max_attempts: 3,
                ambiguous: pol,
                retry_base_secs: 30,
                retry_max_secs: 600,
                ..Sending::default()
            };
            failure_completion(&f(class), attempts, &sending, now, 1)
        };
        assert!(matches!(
            c(FailureClass::Permanent, 0, AmbiguousPolicy::Hold),
            Completion::Failed { .. }
        ));
        assert!(matches!(
            c(FailureClass::Temporary, 0, AmbiguousPolicy::Hold),
            Completion::Retry {
                count_attempt: true,
                ..
            }
        ));
        assert!(matches!(
            c(FailureClass::Temporary, 2, AmbiguousPolicy::Hold),
            Completion::Failed { .. }
        ));
        assert!(matches!(
            c(FailureClass::Modem, 2, AmbiguousPolicy::Hold),
            Completion::Retry {
                count_attempt: false,
                ..
            }
        ));
        assert!(matches!(
            c(FailureClass::Ambiguous, 0, AmbiguousPolicy::Hold),
            Completion::Ambiguous { .. }
        ));
        assert!(matches!(
            c(FailureClass::Ambiguous, 0, AmbiguousPolicy::Resend),
            Completion::Retry { .. }
        ));
    }

    #[test]
    fn routing_least_loaded_in_group() {
        let m = |id: &str, load, group: Option<&str>| Candidate {
            id: id.into(),
            ready: true,
            busy: false,
            group: group.map(Into::into),
            load,
            allowed: true,
        };
        let mut cs = vec![
            m("a", 5, Some("branch1")),
            m("b", 2, None),
            m("c", 3, Some("branch1")),
        ];
        assert_eq!(route(&cs, None).unwrap().id, "b");
        assert_eq!(route(&cs, Some("branch1")).unwrap().id, "c");
        cs[2].ready = false;
        assert_eq!(route(&cs, Some("branch1")).unwrap().id, "a");
        cs[0].busy = true;
        assert!(route(&cs, Some("branch1")).is_none());
        assert!(route(&cs, Some("nowhere")).is_none());
    }

    #[test]
    fn opt_out_keywords_case_and_width_insensitive() {
        let k: Vec<String> = ["T", "TD", "退订", "STOP", "UNSUBSCRIBE"]
            .map(String::from)
            .to_vec();
        for yes in [
            "T",
            "t",
            "td",
            "ＴＤ",
            " TD。",
            "退订",
            "退订！",
            "Stop",
            "unsubscribe",
        ] {
            assert!(is_opt_out(yes, &k), "{yes:?}");
        }
        for no in ["", "thanks", "TD please call", "不退订", "STOPS"] {
            assert!(!is_opt_out(no, &k), "{no:?}");
        }
    }
}
