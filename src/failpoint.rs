//! Named points between two writes where a test can make the daemon die as a
//! `kill -9` would, to prove what survives a crash exactly there (a report
//! recorded but not yet deleted from the modem, a part recorded but the next
//! not sent...). Inert unless `SMSGW_FAILPOINT=NAME[:N]` is set in the daemon's
//! environment: then the N-th time (default the first) the point is passed, the
//! process sends itself SIGKILL. `panic:NAME` panics there instead (to test the
//! supervisor).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

struct Armed {
    name: String,
    nth: u32,
    panic: bool,
    seen: AtomicU32,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var("SMSGW_FAILPOINT").ok()?;
            let (v, panic) = match v.strip_prefix("panic:") {
                Some(rest) => (rest.to_string(), true),
                None => (v, false),
            };
            let (name, nth) = match v.split_once(':') {
                Some((n, k)) => (n.to_string(), k.parse().unwrap_or(1)),
                None => (v, 1),
            };
            Some(Armed {
                name,
                nth: nth.max(1),
                panic,
                seen: AtomicU32::new(0),
            })
        })
        .as_ref()
}

/// Passes the point `name`.
pub fn hit(name: &str) {
    let Some(a) = armed() else {
        return;
    };
    if a.name != name || a.seen.fetch_add(1, Ordering::SeqCst) + 1 != a.nth {
        return;
    }
    if a.panic {
        panic!("failpoint {name}");
    }
    eprintln!("failpoint {name}: the process kills itself (SIGKILL)");
    let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
}
