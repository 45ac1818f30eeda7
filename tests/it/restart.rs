//! A restart as a branch lives it: smsgw killed with SIGKILL mid-campaign and
//! started again at once (systemd's `Restart=`), several times, while parts and
//! delivery reports are in flight. The simulated modems run in processes of
//! their own and keep what they said while nobody listened for the next open,
//! as USB modems do. Checked against the simulators' record of the network:
//!
//! - nothing reaches the network twice;
//! - every part's recorded reference (MR) is the one the network gave it (a
//!   reply shifted by one after a restart would pair every MR with the wrong part);
//! - the rows in flight at a kill are settled within seconds of the restart,
//!   not after their lease;
//! - on a modem that stores its reports, every report is recorded; on one that
//!   routes them, the reports lost while no smsgw listened are counted.

use super::daemon_faults::{database, migrated, sim, Reap};
use smsgw::store::{NewMessage, Store};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One part as the network received it (a simulator's record line).
#[derive(serde::Deserialize, Debug, Clone)]
pub(crate) struct Net {
    pub(crate) modem: String,
    pub(crate) mr: u8,
    pub(crate) to: String,
    pub(crate) part: u8,
}

pub(crate) fn network(dir: &Path, names: &[&str]) -> Vec<Net> {
    let mut out = Vec::new();
    for name in names {
        if let Ok(text) = std::fs::read_to_string(dir.join(format!("{name}.jsonl"))) {
            out.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<Net>(l).unwrap()),
            );
        }
    }
    out
}

pub(crate) fn daemon(cfg: &Path, log: &Path, env: &[(&str, &str)]) -> Child {
    daemon_of(Path::new(env!("CARGO_BIN_EXE_smsgw")), cfg, log, env)
}

fn daemon_of(bin: &Path, cfg: &Path, log: &Path, env: &[(&str, &str)]) -> Child {
    let mut c = Command::new(bin);
    c.args(["run", "--config"])
        .arg(cfg)
        .env("RUST_LOG", "smsgw=info")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        );
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

/// A small deterministic generator (no dependency), for kill times.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

async fn rows(store: &Store, n: i64) -> Vec<smsgw::store::OutboxRow> {
    let mut v = Vec::new();
    for id in 1..=n {
        v.push(store.get(id).await.unwrap().unwrap());
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_keeps_every_mr_and_costs_seconds_sqlite() {
    kill_and_restart("sqlite", &Daemon::this()).await.check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_keeps_every_mr_and_costs_seconds_postgres() {
    kill_and_restart("postgres", &Daemon::this()).await.check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_keeps_every_mr_and_costs_seconds_mariadb() {
    kill_and_restart("mysql", &Daemon::this()).await.check()
}

/// The same run against another build of smsgw, for docs/benchmarks.md: prints
/// both builds' figures and checks nothing. Run it with the previous code:
/// `COMPARE_SMSGW_BIN=/path/to/old/smsgw cargo nextest run --run-ignored only
/// -E 'test(restart_figures)' --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: needs COMPARE_SMSGW_BIN, takes minutes"]
async fn restart_figures_against_another_build() {
    let other = std::env::var("COMPARE_SMSGW_BIN").expect("COMPARE_SMSGW_BIN");
    let backends = std::env::var("COMPARE_SMSGW_BACKENDS").unwrap_or("sqlite".into());
    for backend in backends.split(',') {
        for d in [Daemon::this(), Daemon::other(&other)] {
            let f = kill_and_restart(backend, &d).await;
            eprintln!("FIGURES {backend} {}: {}", d.label, f.line());
            if f.parts == 0 {
                let head: Vec<&str> = f.log.lines().take(40).collect();
                eprintln!(
                    "nothing sent; the daemon's log begins:\n{}",
                    head.join("\n")
                );
            }
        }
    }
}

/// Which smsgw runs as the daemon; the simulators are always this build's.
struct Daemon {
    bin: std::path::PathBuf,
    label: &'static str,
    /// How long a restarted daemon may take to settle before the run gives up
    /// on that round: 10 s (the target) for this build; past the lease for
    /// another, which may only ever settle by lease expiry.
    settle_limit: Duration,
}

impl Daemon {
    fn this() -> Daemon {
        Daemon {
            bin: env!("CARGO_BIN_EXE_smsgw").into(),
            label: "this build",
            settle_limit: Duration::from_secs(10),
        }
    }
    fn other(path: &str) -> Daemon {
        Daemon {
            bin: path.into(),
            label: "other build",
            settle_limit: Duration::from_secs(LEASE_SECS + 30),
        }
    }
}

/// The lease the runs configure: long enough that a settle "by lease" is
/// unmistakable next to one "at start".
const LEASE_SECS: u64 = 120;

/// What one run measured, and what went wrong in it.
#[derive(Default)]
struct Figures {
    kills: usize,
    /// Per restart: seconds until the rows in flight at the kill were settled,
    /// or None when they were not within the limit.
    settle: Vec<Option<f64>>,
    parts: usize,
    sent_twice: usize,
    wrong_mr: usize,
    stored_total: usize,
    stored_recorded: usize,
    routed_total: usize,
    routed_recorded: usize,
    ambiguous: usize,
    unfinished: usize,
    stale_answers: usize,
    problems: Vec<String>,
    log: String,
    /// The database server was unreachable outside CI.
    skipped: bool,
}

impl Figures {
    fn line(&self) -> String {
        let settle: Vec<String> = self
            .settle
            .iter()
            .map(|s| s.map_or("never".into(), |s| format!("{s:.1}")))
            .collect();
        format!(
            "{} kills; settled after each restart (s): {}; {} parts on the network, \
             {} sent twice, {} recorded with a wrong MR; stored reports recorded {}/{}; \
             routed reports recorded {}/{}; {} rows ambiguous, {} unfinished; \
             {} stale +CMGS read at open",
            self.kills,
            settle.join(", "),
            self.parts,
            self.sent_twice,
            self.wrong_mr,
            self.stored_recorded,
            self.stored_total,
            self.routed_recorded,
            self.routed_total,
            self.ambiguous,
            self.unfinished,
            self.stale_answers
        )
    }

    /// The promises: nothing twice, every MR the network's, every stored
    /// report recorded, every row settled within 10 s of each restart.
    fn check(self) {
        if self.skipped {
            return;
        }
        eprintln!("FIGURES: {}", self.line());
        assert!(
            self.problems.is_empty(),
            "{}\n--- daemon log ---\n{}",
            self.problems.join("\n"),
            self.log
        );
        assert!(self.kills == 3 && self.settle.iter().all(|s| s.is_some()));
        assert_eq!((self.sent_twice, self.wrong_mr, self.unfinished), (0, 0, 0));
        assert_eq!(self.stored_recorded, self.stored_total);
    }
}

async fn kill_and_restart(backend: &str, who: &Daemon) -> Figures {
    let mut f = Figures::default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some((url, drop_db)) = database(backend, d).await else {
        f.skipped = true;
        return f;
    };
    // s1, s2 store their reports (+CDSI, the default); s3 is a Huawei, whose
    // profile routes them (+CDS).
    let names = ["s1", "s2", "s3"];
    let mut sims = Reap(vec![
        sim(d, "s1", &["--latency-ms", "300-700", "--seed", "11"]),
        sim(d, "s2", &["--latency-ms", "300-700", "--seed", "12"]),
        sim(
            d,
            "s3",
            &[
                "--profile",
                "huawei",
                "--latency-ms",
                "300-700",
                "--seed",
                "13",
            ],
        ),
    ]);
    let modems: String = names
        .iter()
        .map(|n| {
            format!(
                "[[modem]]\nid = \"{n}\"\ndevice = \"{}\"\nsend_timeout_secs = 5\ncommand_timeout_secs = 2\n\n",
                d.join(n).display()
            )
        })
        .collect();
    let cfg = d.join("smsgw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"{url}\"\n\n[status]\nsocket = \"\"\n\n{modems}[quiet_hours]\ntimezone = \"Asia/Shanghai\"\n\n\
             [sending]\npoll_secs = 1\nlease_secs = {LEASE_SECS}\nretry_base_secs = 1\nretry_max_secs = 2\nmax_attempts = 20\nurgent_categories = []\n"
        ),
    )
    .unwrap();
    let o = Command::new(&who.bin)
        .args(["migrate", "--database", &url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let store = Store::connect(&url).await.unwrap();
    let n = 48i64;
    let long = "尊敬的客户：中秋佳节将至，祝您和家人身体健康、阖家幸福、万事如意！本店会员日全场八折，积分可抵现金，详询门店。另：预约请回复本短信，退订回T。本活动最终解释权归本店所有。";
    for i in 0..n {
        let body = if i % 2 == 0 {
            long.to_string()
        } else {
            format!("提醒：您的号码是 {i}，请到 3 号窗口")
        };
        store
            .enqueue(&NewMessage::new(&format!("+86137{i:08}"), &body))
            .await
            .unwrap();
    }
    let log = d.join("daemon.log");
    let mut rng = Lcg(backend.len() as u64 * 7919);
    let mut running = Reap(vec![daemon_of(&who.bin, &cfg, &log, &[])]);
    for _round in 0..3 {
        tokio::time::sleep(Duration::from_millis(rng.next(1200, 2600))).await;
        let mut p = running.0.pop().unwrap();
        p.kill().unwrap(); // SIGKILL: no chance to clean up
        p.wait().unwrap();
        f.kills += 1;
        let in_flight: Vec<i64> = rows(&store, n)
            .await
            .iter()
            .filter(|r| r.state == "sending")
            .map(|r| r.id)
            .collect();
        // Restarted at once, as Restart= does; the next round kills it again.
        let restarted = Instant::now();
        running.0.push(daemon_of(&who.bin, &cfg, &log, &[]));
        // Every row the dead process held leaves its hands within seconds:
        // settled at start (queued again, sent, or ambiguous), then sent.
        let deadline = restarted + who.settle_limit;
        loop {
            let mut open = Vec::new();
            for id in &in_flight {
                let r = store.get(*id).await.unwrap().unwrap();
                if !(r.state.is_final() || r.state == "ambiguous") {
                    open.push((r.id, r.state));
                }
            }
            if open.is_empty() {
                f.settle.push(Some(restarted.elapsed().as_secs_f64()));
                break;
            }
            if Instant::now() > deadline {
                f.settle.push(None);
                f.problems.push(format!(
                    "rows in flight at kill {} not settled {:?} after the restart: {open:?}",
                    f.kills, who.settle_limit
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The last one runs the campaign to its end.
    let mut last = running;
    let deadline = Instant::now() + who.settle_limit.max(Duration::from_secs(90));
    loop {
        let open = rows(&store, n)
            .await
            .iter()
            .filter(|r| matches!(r.state.as_str(), "queued" | "sending" | "retrying"))
            .count();
        if open == 0 {
            break;
        }
        if Instant::now() > deadline {
            f.unfinished = open;
            f.problems
                .push(format!("{open} rows unfinished at the end"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Reports for the last parts: a moment to arrive.
    let storing: HashSet<&str> = ["s1", "s2"].into();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut waiting = 0;
        for id in 1..=n {
            for p in store.parts(id).await.unwrap() {
                if storing.contains(p.modem.as_str()) && p.status == smsgw::store::Delivery::Pending
                {
                    waiting += 1;
                }
            }
        }
        if waiting == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    last.0[0].kill().unwrap();
    last.0[0].wait().unwrap();
    last.0.clear();
    for s in &mut sims.0 {
        let _ = s.stdin.as_mut().unwrap().write_all(b"quit\n");
        let _ = s.wait();
    }
    let net = network(d, &names);
    f.log = std::fs::read_to_string(&log).unwrap_or_default();
    f.parts = net.len();
    // 1. Nothing reached the network twice.
    let mut seen = HashSet::new();
    for r in &net {
        if !seen.insert((r.to.clone(), r.part)) {
            f.sent_twice += 1;
            f.problems.push(format!("sent twice: {r:?}"));
        }
    }
    // 2. Every recorded part's MR is the network's; reports counted by how
    // the modem that sent the part hands them over.
    let by_part: HashMap<(String, u8), &Net> =
        net.iter().map(|r| ((r.to.clone(), r.part), r)).collect();
    let all = rows(&store, n).await;
    for row in &all {
        let to = row.recipient.clone().unwrap();
        for p in store.parts(row.id).await.unwrap() {
            let Some(r) = by_part.get(&(to.clone(), p.seq as u8)) else {
                f.wrong_mr += 1;
                f.problems.push(format!(
                    "row {}: part {} recorded but not on the network",
                    row.id, p.seq
                ));
                continue;
            };
            if (p.modem.as_str(), p.mr) != (r.modem.as_str(), Some(r.mr)) {
                f.wrong_mr += 1;
                f.problems.push(format!(
                    "row {} part {}: recorded {}/{:?}, the network gave {}/{}",
                    row.id, p.seq, p.modem, p.mr, r.modem, r.mr
                ));
                continue;
            }
            let delivered = p.status == smsgw::store::Delivery::Delivered;
            if storing.contains(p.modem.as_str()) {
                f.stored_total += 1;
                f.stored_recorded += delivered as usize;
                if !delivered {
                    f.problems.push(format!(
                        "row {} part {} on a storing modem: its report was not recorded",
                        row.id, p.seq
                    ));
                }
            } else {
                f.routed_total += 1;
                f.routed_recorded += delivered as usize;
            }
        }
        match row.state.as_str() {
            "sent" => {
                let on_net = (1..=row.parts_total.unwrap_or(0))
                    .filter(|s| by_part.contains_key(&(to.clone(), *s as u8)))
                    .count() as i32;
                if Some(on_net) != row.parts_total {
                    f.problems
                        .push(format!("row {} sent but parts missing", row.id));
                }
            }
            "ambiguous" => f.ambiguous += 1,
            "queued" | "sending" | "retrying" => {}
            other => f
                .problems
                .push(format!("row {} ended {other}: {row:?}", row.id)),
        }
    }
    if f.stored_total + f.routed_total <= n as usize {
        f.problems.push(format!(
            "too few parts checked: {}",
            f.stored_total + f.routed_total
        ));
    }
    f.stale_answers = f
        .log
        .matches("a previous process's answer was waiting in the port")
        .count();
    drop(store);
    if let Some((admin, sql)) = drop_db {
        admin.execute_raw(&sql).await.unwrap();
    }
    f
}

/// What the simulator `s` holds in its memories: (SM used, SR used).
fn sim_storage(s: &mut Child) -> (usize, usize) {
    use std::io::BufRead;
    s.stdin.as_mut().unwrap().write_all(b"storage\n").unwrap();
    let mut out = std::io::BufReader::new(s.stdout.as_mut().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the simulator ended");
        if let Some(rest) = line.trim().strip_prefix("storage ") {
            let v: Vec<usize> = rest
                .split(' ')
                .map(|kv| kv.split_once('=').unwrap().1.parse().unwrap())
                .collect();
            return (v[0], v[1]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_a_report_record_and_its_delete_loses_nothing_sqlite() {
    kill_around_the_record("sqlite", "after_record_before_delete").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_reading_a_report_and_its_record_loses_nothing_sqlite() {
    kill_around_the_record("sqlite", "before_record").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_a_report_record_and_its_delete_loses_nothing_postgres() {
    kill_around_the_record("postgres", "after_record_before_delete").await
}

/// A stored report (and a stored incoming message) read from the modem, and
/// the daemon killed just before its record, or between its record and its
/// delete from the modem: after the restart it is recorded exactly once and
/// deleted. (The delete never comes before the record.)
async fn kill_around_the_record(backend: &str, point: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some((url, drop_db)) = database(backend, d).await else {
        return;
    };
    let mut sims = Reap(vec![sim(d, "s1", &["--latency-ms", "50"])]);
    let cfg = d.join("smsgw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"{url}\"\n\n[status]\nsocket = \"\"\n\n[[modem]]\nid = \"s1\"\ndevice = \"{}\"\n\n\
             [quiet_hours]\ntimezone = \"Asia/Shanghai\"\n\n[sending]\npoll_secs = 1\n",
            d.join("s1").display()
        ),
    )
    .unwrap();
    let store = migrated(&url).await;
    let log = d.join("daemon.log");
    let id = store
        .enqueue(&NewMessage::new("+8613800000001", "report me"))
        .await
        .unwrap()
        .id;
    let mut first = daemon(&cfg, &log, &[("SMSGW_FAILPOINT", point)]);
    // The part goes; its report is stored on the modem and read: the daemon dies.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = first.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the failpoint was never reached");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "killed: {status:?}");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log_text.contains("failpoint"), "{log_text}");
    let row = store.get(id).await.unwrap().unwrap();
    let parts = store.parts(id).await.unwrap();
    assert_eq!(parts.len(), 1, "{log_text}");
    let part = &parts[0];
    let recorded = part.status == smsgw::store::Delivery::Delivered;
    assert_eq!(
        recorded,
        point == "after_record_before_delete",
        "{point}: the report is recorded before the kill only when the point is after it ({row:?})"
    );
    assert_eq!(sim_storage(&mut sims.0[0]).1, 1, "still on the modem");
    // A customer's message arrives while nobody listens: it waits on the SIM.
    sims.0[0]
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"incoming +8613900000002 hello\n")
        .unwrap();
    let second = Reap(vec![daemon(&cfg, &log, &[])]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let delivered = store.get(id).await.unwrap().unwrap().delivery == "delivered";
        let storage = sim_storage(&mut sims.0[0]);
        if delivered && storage == (0, 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delivered {delivered}, modem holds {storage:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let inbox = store
        .execute_raw("UPDATE inbox SET opt_out = opt_out WHERE body = 'hello'")
        .await
        .unwrap();
    assert_eq!(inbox, 1, "the incoming message once");
    assert_eq!(network(d, &["s1"]).len(), 1, "the part once");
    drop(second);
    drop(store);
    if let Some((admin, sql)) = drop_db {
        admin.execute_raw(&sql).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_one_killed_for_good_and_a_skewed_clock_postgres() {
    two_instances("postgres").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_one_killed_for_good_and_a_skewed_clock_mariadb() {
    two_instances("mysql").await
}

/// Two instances on one database, B's machine clock five minutes fast. While
/// both run, B never takes A's rows (leases run on the database's clock: on B's
/// own clock every lease of A's would look expired). Then A is killed and never
/// comes back: B settles A's rows within the lease and finishes the campaign;
/// nothing reaches the network twice.
async fn two_instances(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some((url, drop_db)) = database(backend, d).await else {
        return;
    };
    let names = ["a1", "a2", "b1", "b2"];
    let mut sims = Reap(
        names
            .iter()
            .map(|n| sim(d, n, &["--latency-ms", "300-600"]))
            .collect(),
    );
    let lease = 12;
    let cfg = |me: &str, skew: i64| {
        let modems: String = names
            .iter()
            .filter(|n| n.starts_with(me))
            .map(|n| {
                format!(
                    "[[modem]]\nid = \"{n}\"\ndevice = \"{}\"\nsend_timeout_secs = 5\n\n",
                    d.join(n).display()
                )
            })
            .collect();
        let path = d.join(format!("{me}.toml"));
        std::fs::write(
            &path,
            format!(
                "[database]\nurl = \"{url}\"\n\n[status]\nsocket = \"\"\n\n[instance]\nclock_skew_secs = {skew}\n\n{modems}\
                 [quiet_hours]\ntimezone = \"Asia/Shanghai\"\n\n[sending]\npoll_secs = 1\nlease_secs = {lease}\nurgent_categories = []\n"
            ),
        )
        .unwrap();
        path
    };
    let (cfg_a, cfg_b) = (cfg("a", 0), cfg("b", 300));
    let store = migrated(&url).await;
    let n = 160i64;
    for i in 0..n {
        store
            .enqueue(&NewMessage::new(
                &format!("+86136{i:08}"),
                &format!("提醒 {i}"),
            ))
            .await
            .unwrap();
    }
    let (log_a, log_b) = (d.join("a.log"), d.join("b.log"));
    let mut a = daemon(&cfg_a, &log_a, &[]);
    let _b = Reap(vec![daemon(&cfg_b, &log_b, &[])]);
    // Longer than B's housekeeping period (half the lease): B looks for expired
    // leases while A is alive and sending.
    tokio::time::sleep(Duration::from_secs(9)).await;
    // A dies for good, with rows in its hands.
    a.kill().unwrap();
    a.wait().unwrap();
    let killed = Instant::now();
    let a_owner = std::fs::read_to_string(&log_a)
        .unwrap()
        .lines()
        .find_map(|l| l.split("owner=").nth(1))
        .map(|o| {
            o.split_whitespace()
                .next()
                .unwrap()
                .trim_matches('"')
                .to_string()
        })
        .expect("A logged its identity");
    let a_rows: Vec<i64> = rows(&store, n)
        .await
        .iter()
        .filter(|r| r.state == "sending" && r.lease_owner.as_deref() == Some(a_owner.as_str()))
        .map(|r| r.id)
        .collect();
    // B settles A's rows as their lease expires (it wakes at the next expiry).
    let took_over = loop {
        let mut held = 0;
        for id in &a_rows {
            let r = store.get(*id).await.unwrap().unwrap();
            if r.state == "sending" && r.lease_owner.as_deref() == Some(a_owner.as_str()) {
                held += 1;
            }
        }
        if held == 0 {
            break killed.elapsed();
        }
        // Within the lease (A renewed it at most a third of a lease before
        // it died), plus a moment for B to act on the expiry.
        assert!(
            killed.elapsed() < Duration::from_secs(lease + 2),
            "A's rows still held {:?} after its kill (lease {lease} s)",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let all = rows(&store, n).await;
        if all
            .iter()
            .all(|r| r.state.is_final() || r.state == "ambiguous")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not finished: {:?}",
            all.iter()
                .filter(|r| !r.state.is_final())
                .map(|r| (r.id, r.state, r.lease_owner.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let finished = killed.elapsed();
    for s in &mut sims.0 {
        let _ = s.stdin.as_mut().unwrap().write_all(b"quit\n");
        let _ = s.wait();
    }
    let net = network(d, &names);
    let mut seen = HashSet::new();
    for r in &net {
        assert!(seen.insert((r.to.clone(), r.part)), "sent twice: {r:?}");
    }
    let log_a_text = std::fs::read_to_string(&log_a).unwrap_or_default();
    assert!(
        !log_a_text.contains("taken from us"),
        "B took a row from a live A: {log_a_text}"
    );
    let sent_by: HashMap<&str, usize> = names
        .iter()
        .map(|m| (*m, net.iter().filter(|r| r.modem == *m).count()))
        .collect();
    assert!(
        sent_by["a1"] + sent_by["a2"] > 0 && sent_by["b1"] + sent_by["b2"] > 0,
        "{sent_by:?}"
    );
    assert!(!a_rows.is_empty(), "A had rows in its hands when it died");
    assert!(
        took_over <= Duration::from_secs(lease + 1),
        "A's rows taken over after {took_over:?} (lease {lease} s)"
    );
    eprintln!(
        "FIGURES {backend}: {} rows in A's hands at its kill taken over {:.1} s later (lease {lease} s); \
         the campaign finished {:.1} s after the kill; sent by {sent_by:?}",
        a_rows.len(),
        took_over.as_secs_f64(),
        finished.as_secs_f64()
    );
    drop(store);
    if let Some((admin, sql)) = drop_db {
        admin.execute_raw(&sql).await.unwrap();
    }
}
