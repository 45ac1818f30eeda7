//! Which lines of an incoming call make a call to record: a pure decision
//! over the `RING`, `+CLIP` and `NO CARRIER` lines as they come, and `now`.
//! The actor sends `AT+CHUP`/`ATH` and records the call; this decides when.
//!
//! A call is reported once: at its first `+CLIP` (the caller, or withheld),
//! at its second `RING` when the modem gives no `+CLIP`, or at `NO CARRIER`
//! when it rang once and nothing told who called. A `+CLIP` naming another
//! caller is another call, and after a hang-up the next call may ring at once.

use crate::at::parse::CallLine;
use std::time::{Duration, Instant};

/// Lines of one call come at most this far apart (RING repeats every 3-6 s).
pub const CALL_GAP: Duration = Duration::from_secs(10);
/// After smsgw hangs up, a line this soon is still the call it hung up (a RING
/// already on its way); a later one is a new call.
pub const AFTER_HANG_UP: Duration = Duration::from_secs(2);

/// The call ringing now, as far as its lines have told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ringing {
    last: Instant,
    rings: u32,
    reported: Option<Option<String>>,
    gap: Duration,
}

/// A call to record (and hang up, if so configured): its caller, `None` when
/// withheld or not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    pub caller: Option<String>,
    /// The call has ended already: nothing to hang up.
    pub ended: bool,
}

/// Takes one call line at `now`.
pub fn on_line(state: &mut Option<Ringing>, line: CallLine, now: Instant) -> Option<NewCall> {
    if state
        .as_ref()
        .is_some_and(|c| now.saturating_duration_since(c.last) > c.gap)
    {
        *state = None;
    }
    if line == CallLine::Ended {
        let c = state.take()?;
        return (c.reported.is_none() && c.rings >= 1).then_some(NewCall {
            caller: None,
            ended: true,
        });
    }
    if let (CallLine::Caller(Some(n)), Some(c)) = (&line, state.as_ref()) {
        // Another known number than the call was reported with: another
        // call. (A +CLIP after a call reported without one is its own.)
        if matches!(&c.reported, Some(Some(r)) if r != n) {
            *state = None;
        }
    }
    let c = state.get_or_insert(Ringing {
        last: now,
        rings: 0,
        reported: None,
        gap: CALL_GAP,
    });
    c.last = now;
    let caller = match line {
        CallLine::Ring => {
            c.rings += 1;
            if c.rings < 2 || c.reported.is_some() {
                return None;
            }
            None
        }
        CallLine::Caller(n) if c.reported.is_none() => n,
        _ => return None,
    };
    c.reported = Some(caller.clone());
    Some(NewCall {
        caller,
        ended: false,
    })
}

/// smsgw hung the call up at `now`.
pub fn hung_up(state: &mut Option<Ringing>, now: Instant) {
    if let Some(c) = state {
        c.last = now;
        c.gap = AFTER_HANG_UP;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(n: &str) -> CallLine {
        CallLine::Caller(Some(n.into()))
    }

    #[test]
    fn a_call_is_reported_once_at_its_caller() {
        let t = Instant::now();
        let mut s = None;
        assert_eq!(on_line(&mut s, CallLine::Ring, t), None);
        let c = on_line(&mut s, clip("+8613912345678"), t).unwrap();
        assert_eq!(c.caller.as_deref(), Some("+8613912345678"));
        for i in 1..5 {
            let at = t + Duration::from_secs(3 * i);
            assert_eq!(on_line(&mut s, CallLine::Ring, at), None);
            assert_eq!(on_line(&mut s, clip("+8613912345678"), at), None);
        }
        assert_eq!(
            on_line(&mut s, CallLine::Ended, t + Duration::from_secs(14)),
            None
        );
    }

    #[test]
    fn without_clip_the_second_ring_or_the_end_reports_it() {
        let t = Instant::now();
        let mut s = None;
        assert_eq!(on_line(&mut s, CallLine::Ring, t), None);
        let c = on_line(&mut s, CallLine::Ring, t + Duration::from_secs(3)).unwrap();
        assert_eq!(c.caller, None);
        assert_eq!(
            on_line(&mut s, CallLine::Ended, t + Duration::from_secs(4)),
            None
        );
        // One ring, then the caller gives up.
        let t = t + Duration::from_secs(60);
        assert_eq!(on_line(&mut s, CallLine::Ring, t), None);
        let c = on_line(&mut s, CallLine::Ended, t + Duration::from_secs(2)).unwrap();
        assert!(c.ended && c.caller.is_none());
        // NO CARRIER alone is no call.
        assert_eq!(
            on_line(&mut s, CallLine::Ended, t + Duration::from_secs(3)),
            None
        );
        // Two RINGs, then a late +CLIP: one call, reported at the second ring.
        let t = t + Duration::from_secs(60);
        on_line(&mut s, CallLine::Ring, t);
        assert!(on_line(&mut s, CallLine::Ring, t + Duration::from_secs(3)).is_some());
        assert_eq!(
            on_line(&mut s, clip("+8613912345678"), t + Duration::from_secs(3)),
            None
        );
        assert_eq!(
            on_line(&mut s, CallLine::Ended, t + Duration::from_secs(3)),
            None
        );
    }

    #[test]
    fn another_caller_is_another_call_even_soon_after() {
        let t = Instant::now();
        let mut s = None;
        on_line(&mut s, CallLine::Ring, t);
        assert!(on_line(&mut s, clip("+8613912345678"), t).is_some());
        hung_up(&mut s, t);
        // A RING already on its way belongs to the call hung up.
        assert_eq!(
            on_line(&mut s, CallLine::Ring, t + Duration::from_secs(1)),
            None
        );
        // Three seconds after the hang-up: the same caller again is a new call.
        let t2 = t + Duration::from_secs(4);
        on_line(&mut s, CallLine::Ring, t2);
        assert!(on_line(&mut s, clip("+8613912345678"), t2).is_some());
        // Another number while the first still rings: a second call.
        let c = on_line(&mut s, clip("+8613700000000"), t2 + Duration::from_secs(1)).unwrap();
        assert_eq!(c.caller.as_deref(), Some("+8613700000000"));
    }
}
