//! The daemon as a separate process against simulated modems in their own
//! processes (they survive the daemon, as real modems do), under faults: CMS
//! errors, hangs after Ctrl-Z, an unplugged modem, and a `kill -9` of the daemon
//! mid-campaign followed by a restart. Checked against the simulators' records of
//! what reached the network: no part twice, every sent row's parts there once.

use smsgw::store::{NewMessage, Store};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn sim(dir: &Path, name: &str, extra: &[&str]) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .args(["sim", "--id", name, "--link"])
        .arg(dir.join(name))
        .arg("--record")
        .arg(dir.join(format!("{name}.jsonl")))
        .args(["--report-delay-ms", "200"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(c.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("simulated"), "{line}");
    c
}

fn daemon(cfg: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .args(["run", "--config"])
        .arg(cfg)
        .env("RUST_LOG", "smsgw=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// One line of a simulator's record: a part that reached the network.
#[derive(serde::Deserialize, Debug)]
pub(crate) struct Rec {
    pub(crate) to: String,
    pub(crate) part: u8,
    pub(crate) answered: bool,
}

/// What the simulators `s1`..`s3` in `dir` put on the network.
pub(crate) fn records(dir: &Path) -> Vec<Rec> {
    let mut out = Vec::new();
    for name in ["s1", "s2", "s3"] {
        if let Ok(text) = std::fs::read_to_string(dir.join(format!("{name}.jsonl"))) {
            out.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<Rec>(l).unwrap()),
            );
        }
    }
    out
}

/// Migrates the database at `url` with `smsgw migrate` and connects to it.
pub(crate) async fn migrated(url: &str) -> Store {
    let o = Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .args(["migrate", "--database", url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    Store::connect(url).await.unwrap()
}

/// Queues `n` messages to numbers `{prefix}00000000`...: multipart Chinese
/// greetings and short reminders, alternately.
pub(crate) async fn queue_campaign(store: &Store, n: usize, prefix: &str) {
    let greeting = "尊敬的客户：中秋佳节将至，祝您和家人身体健康、阖家幸福、万事如意！本店会员日全场八折，积分可抵现金，详询门店。";
    for i in 0..n {
        let body = if i % 2 == 0 {
            greeting.to_string()
        } else {
            format!("提醒：您的预约号是 {i}")
        };
        store
            .enqueue(&NewMessage::new(&format!("{prefix}{i:08}"), &body))
            .await
            .unwrap();
    }
}

/// Rows per state.
async fn totals(store: &Store) -> HashMap<String, i64> {
    let mut m = HashMap::new();
    for (st, _, c) in store.counts().await.unwrap() {
        *m.entry(st).or_insert(0) += c;
    }
    m
}

/// Kills the child processes however the test ends.
pub(crate) struct Reap(pub(crate) Vec<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A fresh database on `backend` ("sqlite" in `dir`, or a new server database);
/// returns its url and the SQL that drops it.
pub(crate) async fn database(
    backend: &str,
    dir: &Path,
) -> Option<(String, Option<(Store, String)>)> {
    if backend == "sqlite" {
        return Some((format!("sqlite://{}", dir.join("smsgw.db").display()), None));
    }
    let admin_url = if backend == "postgres" {
        std::env::var("SMSGW_TEST_PG_URL")
            .unwrap_or("postgres://postgres@127.0.0.1:5432/test".into())
    } else {
        std::env::var("SMSGW_TEST_MYSQL_URL").unwrap_or("mysql://root@127.0.0.1:3306/test".into())
    };
    let admin = match Store::connect(&admin_url).await {
        Ok(a) => a,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{backend} unreachable with CI=true: {e}"
            );
            eprintln!("SKIPPED: {e}");
            return None;
        }
    };
    let db = format!(
        "smsgw_faults_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros() % 1_000_000
    );
    admin
        .execute_raw(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let force = if backend == "postgres" {
        " WITH (FORCE)"
    } else {
        ""
    };
    let url = format!("{}/{db}", admin_url.rsplit_once('/').unwrap().0);
    Some((
        url,
        Some((admin, format!("DROP DATABASE IF EXISTS {db}{force}"))),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_unplug_hangs_and_errors_never_send_twice_sqlite() {
    faults_on("sqlite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_unplug_hangs_and_errors_never_send_twice_postgres() {
    faults_on("postgres").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_unplug_hangs_and_errors_never_send_twice_mariadb() {
    faults_on("mysql").await
}

async fn faults_on(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some((url, drop_db)) = database(backend, d).await else {
        return;
    };
    let mut sims = Reap(vec![
        sim(
            d,
            "s1",
            &[
                "--latency-ms",
                "20-80",
                "--cms-error-rate",
                "0.2",
                "--cms-error-code",
                "42",
            ],
        ),
        sim(
            d,
            "s2",
            &[
                "--profile",
                "huawei",
                "--latency-ms",
                "20-80",
                "--hang-after-ctrl-z-rate",
                "0.08",
            ],
        ),
        sim(d, "s3", &["--profile", "zte", "--latency-ms", "20-80"]),
    ]);
    let modems: String = ["s1", "s2", "s3"]
        .iter()
        .map(|n| {
            format!(
                "[[modem]]\nid = \"{n}\"\ndevice = \"{}\"\nsend_timeout_secs = 2\ncommand_timeout_secs = 2\n\n",
                d.join(n).display()
            )
        })
        .collect();
    let cfg = d.join("smsgw.toml");
    let sock = d.join("status.sock").display().to_string();
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"{url}\"\n\n[status]\nsocket = \"{sock}\"\n\n{modems}[quiet_hours]\ntimezone = \"Asia/Shanghai\"\n\n\
             [sending]\npoll_secs = 1\nlease_secs = 10\nretry_base_secs = 1\nretry_max_secs = 2\nmax_attempts = 20\n"
        ),
    )
    .unwrap();
    let store = migrated(&url).await;
    let n = 60;
    queue_campaign(&store, n, "+86135").await;
    // Run, kill -9 mid-campaign, unplug a modem, restart.
    let mut first = daemon(&cfg);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    first.kill().unwrap(); // SIGKILL: no chance to clean up
    first.wait().unwrap();
    let sent_before_kill = records(d).len();
    sims.0[2]
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"unplug 1\n")
        .unwrap();
    let restarted_at = chrono::Utc::now();
    let second = Reap(vec![daemon(&cfg)]);
    // The first daemon's socket file survived its kill -9; the second takes it over
    // and answers on it.
    let status = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let o = Command::new(env!("CARGO_BIN_EXE_smsgw"))
                .args(["status", "--socket", &sock])
                .output()
                .unwrap();
            if o.status.success() {
                break String::from_utf8_lossy(&o.stdout).to_string();
            }
            assert!(Instant::now() < deadline, "status never answered: {o:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert!(status.contains(&format!("database  {backend}")), "{status}");
    assert!(status.contains(" ok\n"), "database healthy: {status}");
    for m in ["s1", "s2", "s3"] {
        assert!(status.contains(m), "{status}");
    }
    // Settle: no row left queued, sending or retrying.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let counts = totals(&store).await;
        let open: i64 = ["queued", "sending", "retrying"]
            .iter()
            .filter_map(|s| counts.get(*s))
            .sum();
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "did not settle: {counts:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Ambiguous rows: every part recorded as acknowledged is on the network, and at
    // most one more (the part that was on the wire). Released for a resend through
    // the status socket, only the unconfirmed parts go again.
    let mut released = 0;
    // Released rows: the parts recorded as acknowledged when they were released.
    let mut confirmed_at_release: HashMap<String, HashSet<u8>> = HashMap::new();
    for _round in 0..10 {
        let mut ambiguous = Vec::new();
        for id in 1..=n as i64 {
            let row = store.get(id).await.unwrap().unwrap();
            if row.state == "ambiguous" {
                ambiguous.push((id, row.recipient.unwrap()));
            }
        }
        if ambiguous.is_empty() {
            break;
        }
        let recs = records(d);
        for (id, to) in &ambiguous {
            let recorded: Vec<i32> = store
                .parts(*id)
                .await
                .unwrap()
                .iter()
                .map(|p| p.seq)
                .collect();
            let on_net: HashSet<i32> = recs
                .iter()
                .filter(|r| &r.to == to)
                .map(|r| i32::from(r.part))
                .collect();
            for seq in &recorded {
                assert!(
                    on_net.contains(seq),
                    "row {id}: part {seq} recorded but not on the network"
                );
            }
            assert!(
                on_net.len() <= recorded.len() + 1,
                "row {id}: {on_net:?} on the network, only {recorded:?} recorded"
            );
            confirmed_at_release
                .entry(to.clone())
                .or_default()
                .extend(recorded.iter().map(|s| *s as u8));
            let o = Command::new(env!("CARGO_BIN_EXE_smsgw"))
                .args(["release", &id.to_string(), "resend", "--socket", &sock])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            released += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut open = 0;
            for (id, _) in &ambiguous {
                let st = store.get(*id).await.unwrap().unwrap().state;
                if ["queued", "sending", "retrying"].contains(&st.as_str()) {
                    open += 1;
                }
            }
            if open == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "released rows did not settle");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    eprintln!("released {released} ambiguous row(s) for a resend");
    // Delivery reports written back: every row whose parts the second daemon sent ends delivered
    // (the simulators report every accepted part as delivered). Reports for parts
    // sent just before the kill -9 may arrive while no daemon listens, as on real
    // modems with routed +CDS: those rows stay pending until report_timeout_hours.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut pending = Vec::new();
        for id in 1..=n as i64 {
            let row = store.get(id).await.unwrap().unwrap();
            // Every part went out while the second daemon listened (a released row
            // may carry parts from before the kill, whose reports had no listener).
            let parts = store.parts(id).await.unwrap();
            let late = !parts.is_empty()
                && parts
                    .iter()
                    .all(|p| p.submitted_at > restarted_at + chrono::Duration::seconds(3));
            if row.state == "sent" && late && row.delivery != "delivered" {
                pending.push((id, row.delivery));
            }
        }
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delivery not written back: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(second);
    for s in &mut sims.0 {
        let _ = s.stdin.as_mut().unwrap().write_all(b"quit\n");
        let _ = s.wait();
    }
    assert!(sent_before_kill > 0, "the kill happened after some sends");
    let recs = records(d);
    // 1. Nothing reached the network twice by our fault. The one allowed repeat: a
    // part of an ambiguous message that an operator released for a resend, and that
    // smsgw had not recorded as acknowledged (the modem hung, or smsgw was killed
    // before the answer was written). A part recorded as acknowledged never goes twice.
    let mut seen = HashSet::new();
    for r in &recs {
        if !seen.insert((r.to.clone(), r.part)) {
            let confirmed = confirmed_at_release.get(&r.to);
            assert!(confirmed.is_some(), "sent twice without a release: {r:?}");
            assert!(
                !confirmed.unwrap().contains(&r.part),
                "a part recorded as acknowledged was sent again: {r:?}"
            );
        }
    }
    // 2. Every row the database calls sent has all its parts on the network.
    // (Counted again: released rows have moved on since the queue settled.)
    let counts = totals(&store).await;
    let sent = counts.get("sent").copied().unwrap_or(0);
    let mut checked = 0;
    for id in 1..=n as i64 {
        let row = store.get(id).await.unwrap().unwrap();
        let to = row.recipient.clone().unwrap();
        let parts = recs
            .iter()
            .filter(|r| r.to == to)
            .map(|r| r.part)
            .collect::<HashSet<_>>()
            .len() as i32;
        match row.state.as_str() {
            "sent" => {
                assert_eq!(
                    Some(parts),
                    row.parts_total,
                    "row {id} sent but parts missing on the network"
                );
                checked += 1;
            }
            // Held: a part may or may not have gone; never resent by us.
            "ambiguous" => assert!(parts <= 2, "row {id}"),
            "failed" => {}
            other => panic!("row {id} ended {other}: {row:?}"),
        }
    }
    assert_eq!(checked, sent);
    assert!(
        sent >= (n as i64) / 2,
        "most messages got through: {counts:?}"
    );
    assert!(
        recs.iter().any(|r| !r.answered) || counts.contains_key("ambiguous") || sent == n as i64
    );
    drop(store);
    if let Some((admin, sql)) = drop_db {
        admin.execute_raw(&sql).await.unwrap();
    }
}

/// An 8-digit PIN (SIM PINs are 4 to 8 digits): a longer needle, and matched as a whole
/// number, so that the check fails only on a real leak.
const PIN: &str = "73914265";

#[test]
fn the_sim_pin_never_reaches_the_logs_even_at_trace_level() {
    // Echo stays on in the simulator until ATE0; the PIN is entered after it, but the
    // log must hold nothing of it whatever the order.
    pin_never_logged(&[], "");
}

/// A SIM slow to check its PIN: `AT+CPIN=` times out, and its echo (with the
/// PIN) and answer come later, as a late reply, through the paths that log
/// lines the engine did not expect.
#[test]
fn a_late_echo_of_the_pin_never_reaches_the_logs() {
    let log = pin_never_logged(&["--slow-pin-ms", "1800"], "command_timeout_secs = 1\n");
    // The PIN's echo arrived after the timeout and was read (masked), and
    // the SIM was asked again rather than given the PIN a second time.
    let warned = log
        .find("no answer to AT+CPIN= in time")
        .unwrap_or_else(|| panic!("AT+CPIN= did not time out: {log}"));
    assert!(log[warned..].contains("read (masked"), "{log}");
    assert_eq!(log.matches("entering SIM PIN").count(), 1, "{log}");
}

/// Runs a daemon at trace level against a simulator with a PIN; checks that
/// the PIN path ran and that the PIN is nowhere in the log, which it returns.
fn pin_never_logged(sim_args: &[&str], modem_cfg: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut args = vec!["--pin", PIN];
    args.extend_from_slice(sim_args);
    let _sim = Reap(vec![sim(d, "s1", &args)]);
    let cfg = d.join("smsgw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"sqlite://{}/x.db\"\n\n[status]\nsocket = \"\"\n\n[[modem]]\nid = \"s1\"\ndevice = \"{}\"\npin = \"{PIN}\"\n{modem_cfg}\n[log]\nformat = \"text\"\n",
            d.display(),
            d.join("s1").display()
        ),
    )
    .unwrap();
    let log_path = d.join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "smsgw=trace")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    // Until the modem is ready (well under a second alone; up to 30 s on a loaded
    // machine), then a moment of trace-level polling traffic after it.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(30)
        && !std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("Ready"))
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("entering SIM PIN"),
        "the PIN path ran: status {status:?}, {} bytes: {log}",
        log.len()
    );
    assert!(
        log.contains("Ready"),
        "the modem became ready with the PIN: {log}"
    );
    assert!(log.contains("CPIN=****"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "no terminal colour codes in a log that goes to a file"
    );
    let leaks = whole_number_hits(&log, PIN);
    assert!(leaks.is_empty(), "PIN leaked into the log: {leaks:?}");
    log
}

/// Lines where `needle` appears as a whole number (no digit on either side). A plain
/// `contains` fails by chance on a trace-level log: microsecond timestamps hold every
/// four-digit string sooner or later (a CI run failed that way with a 4-digit PIN).
fn whole_number_hits<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|line| {
            line.match_indices(needle).any(|(at, _)| {
                let before = line[..at].chars().next_back();
                let after = line[at + needle.len()..].chars().next();
                !before.is_some_and(|c| c.is_ascii_digit())
                    && !after.is_some_and(|c| c.is_ascii_digit())
            })
        })
        .collect()
}

#[test]
fn whole_number_hits_ignores_digits_inside_longer_numbers() {
    let log = "10:31:40.943217Z trace\nAT+CPIN=\"73914265\"\nts 173914265 x";
    assert_eq!(whole_number_hits(log, "4321"), Vec::<&str>::new());
    assert_eq!(whole_number_hits(log, PIN), vec!["AT+CPIN=\"73914265\""]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_limits_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _sim = Reap(vec![sim(d, "s1", &[])]);
    let url = format!("sqlite://{}", d.join("smsgw.db").display());
    let cfg = d.join("smsgw.toml");
    let write = |per_recipient: u32| {
        std::fs::write(
            &cfg,
            format!(
                "[database]\nurl = \"{url}\"\n\n[status]\nsocket = \"\"\n\n[[modem]]\nid = \"s1\"\ndevice = \"{}\"\n\n[limits]\nper_recipient_per_day = {per_recipient}\n\n\
                 [quiet_hours]\ntimezone = \"Asia/Shanghai\"\n\n[sending]\npoll_secs = 1\n",
                d.join("s1").display()
            ),
        )
        .unwrap()
    };
    write(0);
    let daemon = Reap(vec![daemon(&cfg)]);
    let pid = daemon.0[0].id();
    let store = loop {
        // The daemon creates the schema; wait for it.
        if let Ok(s) = Store::connect(&url).await {
            if s.counts().await.is_ok() {
                break s;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let wait_state = |id: i64, want: &'static str| {
        let store = store.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let st = store.get(id).await.unwrap().unwrap().state;
                if st == want {
                    return;
                }
                assert!(Instant::now() < deadline, "row {id} is {st}, not {want}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let first = store
        .enqueue(&NewMessage::new("13800000001", "一"))
        .await
        .unwrap()
        .id;
    wait_state(first, "sent").await;
    // Tighten the per-recipient limit and reload.
    write(1);
    let o = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = store
        .enqueue(&NewMessage::new("13800000001", "二"))
        .await
        .unwrap()
        .id;
    let other = store
        .enqueue(&NewMessage::new("13800000002", "三"))
        .await
        .unwrap()
        .id;
    wait_state(other, "sent").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let row = store.get(second).await.unwrap().unwrap();
    assert_eq!(
        row.state, "queued",
        "held until tomorrow by the reloaded limit: {row:?}"
    );
    assert_eq!(
        records(d).iter().filter(|r| r.to == "13800000001").count(),
        1
    );
    // A broken config on reload is refused; the daemon keeps running.
    std::fs::write(&cfg, "[sending]\nmax_parts = 0\n").unwrap();
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .output()
        .unwrap();
    let last = store
        .enqueue(&NewMessage::new("13800000003", "四"))
        .await
        .unwrap()
        .id;
    wait_state(last, "sent").await;
}
