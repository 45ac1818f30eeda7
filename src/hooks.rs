//! Programs an operator runs after smsgw commits something, with gammu-smsd's
//! conventions (`RunOnReceive`, `RunOnSent`, `RunOnFailure`), so that scripts
//! written for gammu keep working.
//!
//! A hook runs **after the commit**, in its own process, with a timeout, at most
//! [`crate::config::Hooks::max_running`] at once, without blocking the
//! dispatcher or a modem: the event is handed over a bounded channel and
//! dropped (logged, counted) if the runner is that far behind. A hook is run
//! **at most once and never retried**: a hook that fails, hangs (it is killed at
//! the timeout) or was not run because the daemon stopped first is logged and
//! counted (`smsgw_hooks_total`), and the message itself is untouched. What must
//! never be missed should be read from the database, which is the record.

use crate::config;
use crate::store::{InboxMessage, OutboxRow, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{info, warn};

/// Something committed that a hook may want.
#[derive(Debug, Clone)]
pub enum Event {
    /// A new incoming message (found by its fingerprint in the inbox).
    Received(InboxMessage),
    /// An outbox row reached a final state.
    Final { id: i64 },
}

/// The handle the dispatcher and the recorder emit through.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    tx: Option<mpsc::Sender<Event>>,
}

/// Events waiting for the runner before new ones are dropped.
const QUEUE: usize = 1024;

impl Hooks {
    /// Hands an event to the runner without waiting.
    pub fn emit(&self, e: Event) {
        let Some(tx) = &self.tx else {
            return;
        };
        let why = match tx.try_send(e) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(_)) => {
                format!("{QUEUE} events wait for the hooks already running")
            }
            Err(mpsc::error::TrySendError::Closed(_)) => "the daemon is stopping".to_string(),
        };
        metrics::counter!("smsgw_hooks_total", "hook" => "any", "outcome" => "dropped")
            .increment(1);
        warn!(reason = %why, "a hook was not run (hooks are never retried)");
    }
}

/// What to run: the program, its arguments and its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub hook: &'static str,
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// An environment value: no NUL (which no environment can hold).
fn env_value(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// gammu's RunOnReceive: the inbox id as the argument; `SMS_MESSAGES`,
/// `SMS_1_NUMBER`, `SMS_1_TEXT`, `SMS_1_CLASS`, `DECODED_PARTS`,
/// `DECODED_1_TEXT` and `PHONE_ID` in the environment. smsgw has joined the
/// parts, so there is one message and one decoded part.
pub fn on_receive(program: &str, id: i64, m: &InboxMessage) -> Run {
    let text = env_value(&m.body);
    Run {
        hook: "run_on_receive",
        program: program.into(),
        args: vec![id.to_string()],
        env: vec![
            ("SMS_MESSAGES".into(), "1".into()),
            ("SMS_1_NUMBER".into(), env_value(&m.sender)),
            ("SMS_1_TEXT".into(), text.clone()),
            ("SMS_1_CLASS".into(), "-1".into()),
            ("SMS_1_PARTS".into(), m.parts.to_string()),
            ("DECODED_PARTS".into(), "1".into()),
            ("DECODED_1_TEXT".into(), text),
            ("PHONE_ID".into(), env_value(&m.modem)),
        ],
    }
}

/// RunOnSent / RunOnFailure: the outbox id as the argument; `PHONE_ID`,
/// `SMS_1_NUMBER`, and smsgw's `SMSGW_STATE` and `SMSGW_ERROR`.
pub fn on_final(hooks: &config::Hooks, row: &OutboxRow) -> Option<Run> {
    use crate::store::State;
    let (hook, program) = match row.state {
        State::Sent => ("run_on_sent", hooks.run_on_sent.as_ref()?),
        State::Failed | State::Rejected | State::Expired | State::Suppressed | State::Cancelled => {
            ("run_on_failure", hooks.run_on_failure.as_ref()?)
        }
        _ => return None,
    };
    Some(Run {
        hook,
        program: program.clone(),
        args: vec![row.id.to_string()],
        env: vec![
            (
                "PHONE_ID".into(),
                env_value(row.modem.as_deref().unwrap_or("")),
            ),
            (
                "SMS_1_NUMBER".into(),
                env_value(row.recipient.as_deref().unwrap_or("")),
            ),
            ("SMSGW_STATE".into(), row.state.as_str().into()),
            (
                "SMSGW_ERROR".into(),
                env_value(row.last_error.as_deref().unwrap_or("")),
            ),
        ],
    })
}

/// Starts the runner when a hook is configured. The task ends at `stop`.
pub fn start(
    cfg: config::Hooks,
    store: Store,
    stop: watch::Receiver<bool>,
) -> (Hooks, Option<tokio::task::JoinHandle<()>>) {
    if cfg.run_on_receive.is_none() && cfg.run_on_sent.is_none() && cfg.run_on_failure.is_none() {
        return (Hooks::default(), None);
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(runner(cfg, store, rx, stop));
    (Hooks { tx: Some(tx) }, Some(task))
}

async fn runner(
    cfg: config::Hooks,
    store: Store,
    mut rx: mpsc::Receiver<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(cfg.max_running));
    let timeout = Duration::from_secs(cfg.timeout_secs);
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => match ev { Some(ev) => ev, None => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        let run = match ev {
            Event::Received(m) => {
                let Some(p) = &cfg.run_on_receive else {
                    continue;
                };
                match store.inbox_id(&m.fingerprint()).await {
                    Ok(Some(id)) => on_receive(p, id, &m),
                    Ok(None) => continue,
                    Err(e) => {
                        warn!(error = %e, "run_on_receive not run: the message's id cannot be read");
                        continue;
                    }
                }
            }
            Event::Final { id } => match store.get(id).await {
                Ok(Some(row)) => match on_final(&cfg, &row) {
                    Some(r) => r,
                    None => continue,
                },
                Ok(None) => continue,
                Err(e) => {
                    warn!(id, error = %e, "hook not run: the row cannot be read");
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        tokio::spawn(async move {
            execute(&run, timeout).await;
            drop(permit);
        });
    }
}

/// How one run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed(String),
    TimedOut,
}

/// How much of a hook's stderr is kept (its first line goes to the log).
const STDERR_KEPT: usize = 4096;

/// Runs one hook (no shell; a small fixed environment) and logs how it ended.
pub async fn execute(run: &Run, timeout: Duration) -> Outcome {
    let mut cmd = tokio::process::Command::new(&run.program);
    cmd.args(&run.args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .envs(run.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        // Its own process group: at the timeout the hook and whatever it
        // started (a script's `sleep`, `curl`) are killed together.
        .process_group(0)
        .kill_on_drop(true);
    let outcome = match cmd.spawn() {
        Err(e) => Outcome::Failed(format!("cannot start: {e}")),
        Ok(mut child) => {
            let pid = child.id();
            // The first STDERR_KEPT bytes are kept for the log; the rest is
            // read and dropped, so a chatty hook neither fills smsgw's memory
            // nor blocks on a full pipe.
            let mut stderr = child.stderr.take();
            let mut reader = tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut kept = Vec::new();
                if let Some(e) = stderr.as_mut() {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = e.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let room = STDERR_KEPT.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                }
                kept
            });
            let outcome = match tokio::time::timeout(timeout, child.wait()).await {
                Err(_) => {
                    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    Outcome::TimedOut
                }
                Ok(Err(e)) => Outcome::Failed(e.to_string()),
                Ok(Ok(st)) if st.success() => Outcome::Ok,
                Ok(Ok(st)) => {
                    // What it said, unless something it started still holds
                    // the pipe open a second later.
                    let kept = tokio::time::timeout(Duration::from_secs(1), &mut reader)
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or_default();
                    let err = String::from_utf8_lossy(&kept);
                    let first = err
                        .lines()
                        .next()
                        .unwrap_or("")
                        .chars()
                        .take(200)
                        .collect::<String>();
                    Outcome::Failed(format!("{st}: {first}"))
                }
            };
            reader.abort();
            outcome
        }
    };
    let label = match &outcome {
        Outcome::Ok => "ok",
        Outcome::Failed(_) => "failed",
        Outcome::TimedOut => "timeout",
    };
    metrics::counter!("smsgw_hooks_total", "hook" => run.hook, "outcome" => label).increment(1);
    let arg = run.args.first().cloned().unwrap_or_default();
    match &outcome {
        Outcome::Ok => info!(hook = run.hook, id = %arg, "hook ran"),
        Outcome::Failed(why) => {
            warn!(hook = run.hook, id = %arg, program = %run.program, reason = %why, "hook failed (not retried)")
        }
        Outcome::TimedOut => warn!(
            hook = run.hook,
            id = %arg,
            program = %run.program,
            secs = timeout.as_secs(),
            "hook still running at its timeout: killed (not retried)"
        ),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_gets_gammus_environment() {
        let m = InboxMessage {
            modem: "s1".into(),
            sender: "+8613800138000".into(),
            body: "退订\0x".into(),
            parts: 2,
            missing_parts: 0,
            received_at: chrono::Utc::now(),
            opt_out: false,
        };
        let r = on_receive("/bin/hook", 42, &m);
        assert_eq!(r.args, ["42"]);
        let get = |k: &str| r.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("SMS_1_NUMBER"), Some("+8613800138000"));
        assert_eq!(get("DECODED_1_TEXT"), Some("退订\u{FFFD}x"));
        assert_eq!(get("PHONE_ID"), Some("s1"));
        assert_eq!(get("SMS_MESSAGES"), Some("1"));
    }

    #[tokio::test]
    async fn a_hanging_hook_is_killed_and_a_failing_one_reported() {
        let run = |program: &str, args: &[&str]| Run {
            hook: "run_on_sent",
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![],
        };
        let t = std::time::Instant::now();
        assert_eq!(
            execute(&run("/bin/sleep", &["30"]), Duration::from_millis(300)).await,
            Outcome::TimedOut
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        // A script whose child hangs: both are killed, and nothing holds the
        // hook's stderr open after it.
        let t = std::time::Instant::now();
        assert_eq!(
            execute(
                &run("/bin/sh", &["-c", "sleep 30; true"]),
                Duration::from_millis(300)
            )
            .await,
            Outcome::TimedOut
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(matches!(
            execute(&run("/bin/false", &[]), Duration::from_secs(5)).await,
            Outcome::Failed(_)
        ));
        // 64 MiB on stderr: read through, its first line reported.
        let loud = "echo 'bad row 17' >&2; head -c 67108864 /dev/zero >&2; exit 3";
        match execute(&run("/bin/sh", &["-c", loud]), Duration::from_secs(20)).await {
            Outcome::Failed(w) => assert!(w.contains("bad row 17") && w.contains('3'), "{w}"),
            o => panic!("{o:?}"),
        }
        assert!(matches!(
            execute(&run("/nonexistent/hook", &[]), Duration::from_secs(5)).await,
            Outcome::Failed(w) if w.contains("cannot start")
        ));
        assert_eq!(
            execute(&run("/bin/true", &[]), Duration::from_secs(5)).await,
            Outcome::Ok
        );
    }
}
