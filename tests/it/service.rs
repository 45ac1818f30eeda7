//! The daemon as systemd runs it: the notify protocol on a real datagram socket
//! (READY with a STATUS line once the modems are initialised, WATCHDOG pings, and
//! no pings while the dispatcher is stuck: here on a PostgreSQL table lock), and
//! log lines carrying syslog priorities for journald.

use crate::daemon_faults::{database, Reap};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Everything the daemon told the "service manager" within `for_`.
fn collect(sock: &UnixDatagram, for_: Duration) -> Vec<(Instant, String)> {
    let end = Instant::now() + for_;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            out.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).to_string(),
            ));
        }
    }
    out
}

fn pings(msgs: &[(Instant, String)]) -> usize {
    msgs.iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_ready_status_and_a_watchdog_tied_to_the_dispatcher() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some((url, drop_db)) = database("postgres", d).await else {
        return;
    };
    let cfg = d.join("smsgw.toml");
    let sock = d.join("status.sock");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"{url}\"\n\n[status]\nsocket = \"{}\"\n\n\
             [[modem]]\nid = \"m1\"\ndevice = \"sim:generic:5-20\"\n\n[sending]\npoll_secs = 1\n",
            sock.display()
        ),
    )
    .unwrap();
    let notify_path = d.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let log = std::fs::File::create(d.join("stderr.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "1500000")
        .env("STATE_DIRECTORY", d)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut child = Reap(vec![child]);

    // READY=1 with a status line, once the modem is initialised.
    let mut ready = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready.is_none() && Instant::now() < deadline {
        for (_, m) in collect(&notify, Duration::from_millis(200)) {
            if m.contains("READY=1") {
                ready = Some(m);
            }
        }
    }
    let ready = ready.expect("READY=1 within 30 s");
    assert!(
        ready.contains("STATUS=1/1 modems ready; 0 parts sent today"),
        "{ready}"
    );

    // Pings at a third of WatchdogSec while the dispatcher runs.
    let alive = collect(&notify, Duration::from_secs(3));
    assert!(pings(&alive) >= 4, "{alive:?}");

    // A stuck dispatcher: the claim waits on an exclusive lock of the outbox.
    let mut locker = sqlx_lock(&url).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // the beat goes stale
                                                      // Drop the pings queued on the socket before the beat went stale.
    while notify
        .set_nonblocking(true)
        .and_then(|_| notify.recv(&mut [0u8; 512]))
        .is_ok()
    {}
    notify.set_nonblocking(false).unwrap();
    let stuck = tokio::task::spawn_blocking({
        let n = notify.try_clone().unwrap();
        move || collect(&n, Duration::from_secs(3))
    })
    .await
    .unwrap();
    assert_eq!(pings(&stuck), 0, "pinged while stuck: {stuck:?}");
    // smsgw status still answers, and shows the dispatcher's real heartbeat.
    let asked = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .args(["status", "--json", "--socket"])
        .arg(&sock)
        .output()
        .unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "status answered late"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    let silent = v["summary"]["dispatcher_silent_secs"]
        .as_f64()
        .or_else(|| v["dispatcher_silent_secs"].as_f64())
        .unwrap_or_else(|| panic!("no heartbeat in {v}"));
    assert!(silent >= 3.0, "the status saw the dispatcher beat: {v}");
    assert!(
        v["queue"]["unavailable"].as_str().is_some(),
        "the locked queue was counted: {v}"
    );
    sqlx::Executor::execute(&mut locker, "COMMIT")
        .await
        .unwrap();
    let back = tokio::task::spawn_blocking({
        let n = notify.try_clone().unwrap();
        move || collect(&n, Duration::from_secs(3))
    })
    .await
    .unwrap();
    assert!(pings(&back) >= 2, "pings resume: {back:?}");

    // SIGTERM: STOPPING=1, then a clean exit.
    let k = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let bye = collect(&notify, Duration::from_secs(2));
    assert!(bye.iter().any(|(_, m)| m.contains("STOPPING=1")), "{bye:?}");
    let status = child.0[0].wait().unwrap();
    assert!(status.success(), "{status:?}");
    child.0.clear();

    // The journal's view: every line starts with its syslog priority.
    let text = std::fs::read_to_string(d.join("stderr.log")).unwrap();
    assert!(!text.is_empty());
    for line in text.lines() {
        assert!(
            line.len() > 3 && line.starts_with('<') && &line[2..3] == ">",
            "no priority prefix: {line:?}"
        );
    }
    assert!(text.contains("<6> INFO smsgw started"), "{text}");
    assert!(
        text.contains("<4> WARN the dispatcher has stopped making progress"),
        "{text}"
    );
    if let Some((admin, sql)) = drop_db {
        admin.execute_raw(&sql).await.unwrap();
    }
}

/// Opens a connection that holds an exclusive lock on the outbox until COMMIT.
async fn sqlx_lock(url: &str) -> sqlx::PgConnection {
    use sqlx::{Connection, Executor};
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    c.execute("BEGIN").await.unwrap();
    c.execute("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    c
}

/// A task the daemon depends on dies (here the dispatcher panics, through a
/// failpoint): the process does not carry on looking healthy; it exits non-zero
/// (70) with a log line naming the task and why, and systemd restarts it.
#[test]
fn a_dead_essential_task_takes_the_process_down_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("smsgw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"sqlite://{}/x.db\"\n\n[status]\nsocket = \"\"\n\n\
             [[modem]]\nid = \"m1\"\ndevice = \"sim:generic:5-20\"\n\n[sending]\npoll_secs = 1\n",
            d.display()
        ),
    )
    .unwrap();
    let log_path = d.join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("SMSGW_FAILPOINT", "panic:dispatcher_loop:3")
        .env("STATE_DIRECTORY", d)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon kept running without its dispatcher");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(&log_path).unwrap();
    // Debug builds unwind and the supervisor stops the daemon (exit 70); a
    // release build (panic = "abort") is killed by the abort itself.
    assert!(
        status.code() == Some(70) || status.code().is_none(),
        "{status:?}\n{log}"
    );
    assert!(
        log.contains("an essential task ended unexpectedly")
            && log.contains("the dispatcher panicked: failpoint dispatcher_loop"),
        "{log}"
    );
    // The panic itself is one error entry of the journal, not the default
    // hook's lines at the default priority.
    assert!(
        log.lines().any(|l| l.starts_with("<3>")
            && l.contains("panic")
            && l.contains("failpoint dispatcher_loop")),
        "{log}"
    );
    assert!(
        log.lines().all(|l| l.starts_with('<')),
        "a line that is not a journal entry of its own:\n{log}"
    );
}
