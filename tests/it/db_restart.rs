//! A database server that goes down and comes back under a running daemon: a
//! private PostgreSQL cluster stopped with `pg_ctl -m immediate` (a crash, not a
//! shutdown) and a private MariaDB server killed with SIGKILL, each restarted on
//! the same data a few seconds later. Private servers, so the shared ones the
//! other tests use are never disturbed. Delivery reports and incoming messages
//! that arrive while the database is down are kept and written when it returns;
//! no part reaches the network twice.

use super::daemon_faults::{migrated, queue_campaign, records, sim, Reap};
use smsgw::store::Store;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A database server of our own in a scratch directory.
struct Server {
    kind: Kind,
    dir: PathBuf,
    port: u16,
    /// MariaDB runs as our child; PostgreSQL is managed by `pg_ctl`.
    child: Option<Child>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Postgres,
    MariaDb,
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether this process runs as root (then PostgreSQL's tools run as `postgres`:
/// they refuse root).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn user_ids(name: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, name]).output().ok()?;
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// The newest installed PostgreSQL's binaries.
fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
}

/// The server's tools are missing: a failure under CI, a skip elsewhere.
fn unavailable(what: &str) -> Option<Server> {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} is missing with CI=true"
    );
    eprintln!("SKIPPED: {what} is missing");
    None
}

impl Server {
    fn create(kind: Kind, dir: &Path) -> Option<Server> {
        let mut s = Server {
            kind,
            dir: dir.to_path_buf(),
            port: free_port(),
            child: None,
        };
        match kind {
            Kind::Postgres => {
                let Some(bin) = pg_bin() else {
                    return unavailable("PostgreSQL's server binaries");
                };
                if is_root() {
                    let (uid, gid) = user_ids("postgres").expect("a postgres user");
                    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
                }
                let o = s
                    .as_owner(Command::new(bin.join("initdb")))
                    .arg("-D")
                    .arg(dir.join("data"))
                    .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
                    .arg("--no-locale")
                    .output()
                    .unwrap();
                assert!(o.status.success(), "initdb: {o:?}");
            }
            Kind::MariaDb => {
                if !Path::new("/usr/sbin/mariadbd").exists() {
                    return unavailable("/usr/sbin/mariadbd");
                }
                let o = Command::new("mariadb-install-db")
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", dir.join("data").display()))
                    .args([
                        "--user=root",
                        "--skip-test-db",
                        "--auth-root-authentication-method=normal",
                    ])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "mariadb-install-db: {o:?}");
            }
        }
        s.start();
        Some(s)
    }

    fn as_owner(&self, mut c: Command) -> Command {
        if is_root() {
            let (uid, gid) = user_ids("postgres").unwrap();
            c.uid(uid).gid(gid);
        }
        c
    }

    fn pg_ctl(&self, args: &[&str]) {
        let o = self
            .as_owner(Command::new(pg_bin().unwrap().join("pg_ctl")))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "pg_ctl {args:?}: {o:?}");
    }

    fn url(&self) -> String {
        match self.kind {
            Kind::Postgres => format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
            Kind::MariaDb => format!("mysql://root@127.0.0.1:{}/smsgw", self.port),
        }
    }

    fn start(&mut self) {
        match self.kind {
            Kind::Postgres => {
                let log = self.dir.join("server.log").display().to_string();
                let options = format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                    self.port,
                    self.dir.display()
                );
                self.pg_ctl(&["-l", &log, "-w", "-t", "60", "-o", &options, "start"]);
            }
            Kind::MariaDb => {
                let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
                self.child = Some(
                    Command::new("/usr/sbin/mariadbd")
                        .arg("--no-defaults")
                        .arg(format!("--datadir={}", self.dir.join("data").display()))
                        .arg(format!("--socket={}", self.dir.join("sock").display()))
                        .arg(format!("--pid-file={}", self.dir.join("pid").display()))
                        .arg(format!("--port={}", self.port))
                        .args(["--bind-address=127.0.0.1", "--user=root", "--skip-log-bin"])
                        .args([
                            "--innodb-buffer-pool-size=32M",
                            "--innodb-flush-log-at-trx-commit=2",
                        ])
                        .stdout(Stdio::null())
                        .stderr(log)
                        .spawn()
                        .unwrap(),
                );
                // Ready when it accepts a connection.
                let deadline = Instant::now() + Duration::from_secs(60);
                while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                    assert!(Instant::now() < deadline, "mariadbd did not start");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Down without a goodbye: PostgreSQL's immediate stop (crash recovery at
    /// the next start), MariaDB's SIGKILL.
    fn crash(&mut self) {
        match self.kind {
            Kind::Postgres => {
                self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
            }
            Kind::MariaDb => {
                if let Some(mut c) = self.child.take() {
                    c.kill().unwrap();
                    c.wait().unwrap();
                }
            }
        }
    }
}

impl Server {
    /// A migrated `smsgw` database on this server, and a store connected to it.
    async fn database(&self) -> (String, Store) {
        if self.kind == Kind::MariaDb {
            let admin = Store::connect(&self.url().replace("/smsgw", "/mysql"))
                .await
                .unwrap();
            admin.execute_raw("CREATE DATABASE smsgw").await.unwrap();
        }
        let url = self.url();
        let store = migrated(&url).await;
        (url, store)
    }
}

/// `smsgw run` on `url` with the simulated modems `sims` in `d` (status socket
/// `d/status.sock`, log `d/daemon.log`).
fn daemon(d: &Path, url: &str, sims: &[&str]) -> Child {
    let modems: String = sims
        .iter()
        .map(|n| {
            format!(
                "[[modem]]\nid = \"{n}\"\ndevice = \"{}\"\n\n",
                d.join(n).display()
            )
        })
        .collect();
    let cfg = d.join("smsgw.toml");
    let sock = d.join("status.sock").display().to_string();
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"{url}\"\n\n[status]\nsocket = \"{sock}\"\n\n{modems}\
             [quiet_hours]\ntimezone = \"Asia/Shanghai\"\n\n[sending]\npoll_secs = 1\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(d.join("daemon.log")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "smsgw=info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Drop for Server {
    fn drop(&mut self) {
        self.crash();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_crash_and_restart_loses_nothing() {
    restart_under_the_daemon(Kind::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_crash_and_restart_loses_nothing() {
    restart_under_the_daemon(Kind::MariaDb).await
}

/// The delivery report of a part can reach the daemon before the part is recorded:
/// part 1 of a two-part message is acknowledged while the database is down (its
/// write fails), its report waits, the database returns while part 2 is still on
/// the wire, so the report is handled before the message completes. It must still
/// be matched once the parts are recorded. (Timings: 15 s per part; the outage
/// covers part 1's acknowledgement plus the pool's 10 s wait. If the machine is so
/// slow that the order differs, the test still checks the outcome.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_arrives_before_its_part_is_recorded_still_matches() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server_dir = d.join("server");
    std::fs::create_dir(&server_dir).unwrap();
    let Some(mut server) = Server::create(Kind::Postgres, &server_dir) else {
        return;
    };
    let (url, store) = server.database().await;
    let _sims = Reap(vec![sim(d, "s1", &["--latency-ms", "15000-15000"])]);
    let _daemon = Reap(vec![daemon(d, &url, &["s1"])]);
    let sock = d.join("status.sock").display().to_string();
    // Ready (the status socket answers with the modem ready), then one message.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = Command::new(env!("CARGO_BIN_EXE_smsgw"))
            .args(["status", "--socket", &sock])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&o.stdout).contains("1/1 ready") {
            break;
        }
        assert!(Instant::now() < deadline, "the modem never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = "尊敬的客户：您预约的体检在下周一上午八点，请空腹前来，携带身份证和医保卡。体检中心在门诊楼三楼，电梯右转即到。如需改约请回复本短信或致电服务台。";
    assert!(text.chars().count() > 70, "two parts");
    let id = store
        .enqueue(&smsgw::store::NewMessage::new("+8613612345678", text))
        .await
        .unwrap()
        .id;
    // Claimed within the 1 s poll; part 1 is then on the wire for 15 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.crash();
    // Part 1 acknowledged at ~16 s, its write gives up ~10 s later; part 2 is
    // acknowledged at ~31 s. Back at ~28 s: between the two.
    tokio::time::sleep(Duration::from_secs(25)).await;
    server.start();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(Some(row)) = store.get(id).await {
            if row.state == "sent" && row.delivery == "delivered" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "state {} delivery {}: {}",
                row.state,
                row.delivery,
                std::fs::read_to_string(d.join("daemon.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "row {id} unreadable");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(records(d).len(), 2, "two parts, each once");
}

async fn restart_under_the_daemon(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server_dir = d.join("server");
    std::fs::create_dir(&server_dir).unwrap();
    let Some(mut server) = Server::create(kind, &server_dir) else {
        return;
    };
    let (url, store) = server.database().await;
    let mut sims = Reap(vec![
        sim(d, "s1", &["--latency-ms", "100-250"]),
        sim(d, "s2", &["--profile", "huawei", "--latency-ms", "100-250"]),
    ]);
    let sock = d.join("status.sock").display().to_string();
    let n = 60;
    queue_campaign(&store, n, "+86137").await;
    let daemon = Reap(vec![daemon(d, &url, &["s1", "s2"])]);
    let on_network = || records(d);
    let deadline = Instant::now() + Duration::from_secs(60);
    while on_network().len() < 8 {
        assert!(
            Instant::now() < deadline,
            "the campaign did not start: {}",
            std::fs::read_to_string(d.join("daemon.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A short outage: the daemon's writes wait for the pool and go through late;
    // parts acknowledged meanwhile are recorded when the database returns, maybe
    // after their delivery reports (which must still find them).
    server.crash();
    tokio::time::sleep(Duration::from_secs(4)).await;
    server.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    while on_network().len() < 30 {
        assert!(Instant::now() < deadline, "the campaign did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A long one, with sends on the wire and reports on their way.
    server.crash();
    let down_at = Instant::now();
    // Customers reply while it is down: a long message (concatenated) and an opt-out.
    let reply = "您好，我想把预约改到下周三下午两点以后，另外请问会员积分可以抵扣多少现金？门店附近停车是否免费？如果下周三不行，周四上午也可以。谢谢！麻烦尽快回复我。";
    assert!(reply.chars().count() > 70, "two UCS2 parts");
    for (s, line) in [
        (0, format!("incoming +8613900000001 {reply}\n")),
        (1, "incoming +8613700000003 退订\n".to_string()),
    ] {
        sims.0[s]
            .stdin
            .as_mut()
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
    }
    // The status socket still answers, and says so.
    let status = loop {
        let o = Command::new(env!("CARGO_BIN_EXE_smsgw"))
            .args(["status", "--socket", &sock])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        if out.contains("UNREACHABLE") || down_at.elapsed() > Duration::from_secs(20) {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(status.contains("UNREACHABLE"), "{status}");
    // Longer than the pool's 10 s wait for a connection: the daemon's writes fail
    // (a shorter outage only delays them).
    let wait = Duration::from_secs(15).saturating_sub(down_at.elapsed());
    tokio::time::sleep(wait).await;
    let sent_while_down = on_network().len();
    server.start();

    // Everything goes out, once, and its delivery is written back.
    let deadline = Instant::now() + Duration::from_secs(120);
    let rows = loop {
        let mut rows = Vec::new();
        for id in 1..=n as i64 {
            if let Ok(Some(row)) = store.get(id).await {
                rows.push(row);
            }
        }
        let done = rows.len() == n
            && rows
                .iter()
                .all(|r| r.state == "sent" && r.delivery == "delivered");
        if done {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "did not settle: {:?}",
            rows.iter()
                .map(|r| (r.id, r.state, r.delivery))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let mut seen: HashMap<(String, u8), usize> = HashMap::new();
    for r in on_network() {
        *seen.entry((r.to, r.part)).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "parts on the network twice: {twice:?}");
    for row in &rows {
        let to = row.recipient.clone().unwrap();
        let parts = row.parts_total.unwrap();
        for p in 1..=parts as u8 {
            assert_eq!(
                seen.get(&(to.clone(), p)),
                Some(&1),
                "row {} part {p}",
                row.id
            );
        }
    }
    // What the customers sent while the database was down is in the inbox.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let inbox = inbox_count(kind, &url, "%13900000001", reply).await;
        let opted = store.is_opted_out("+8613700000003").await.unwrap_or(false);
        if inbox == 1 && opted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "incoming lost: {inbox} in the inbox, opted out {opted}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut daemon = daemon;
    assert!(
        daemon.0[0].try_wait().unwrap().is_none(),
        "the daemon survived the outage"
    );
    let log = std::fs::read_to_string(d.join("daemon.log")).unwrap();
    assert!(
        ["database unavailable", "kept and retried", "cannot record"]
            .iter()
            .any(|w| log.contains(w)),
        "the daemon's writes failed during the outage ({sent_while_down} parts on the network when it ended): {log}"
    );
}

/// Inbox rows from a sender (LIKE pattern) with exactly this body.
async fn inbox_count(kind: Kind, url: &str, sender: &str, body: &str) -> i64 {
    match kind {
        Kind::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query_scalar("SELECT COUNT(*) FROM inbox WHERE sender LIKE $1 AND body = $2")
                .bind(sender)
                .bind(body)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
        Kind::MariaDb => {
            let pool = sqlx::MySqlPool::connect(url).await.unwrap();
            sqlx::query_scalar("SELECT COUNT(*) FROM inbox WHERE sender LIKE ? AND body = ?")
                .bind(sender)
                .bind(body)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    }
}

/// A database outage longer than anything kept in memory, with the daemon
/// killed (SIGKILL) in the middle of it and started again after: every delivery
/// report and every incoming message that arrived meanwhile is recorded exactly
/// once, and every part acknowledged meanwhile too. The routed reports (the
/// Huawei modem routes them) and the acknowledged parts existed only in the
/// daemon: they come back from its journal; the stored reports and messages
/// waited on the SIMs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_with_a_kill_in_the_middle_records_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server_dir = d.join("server");
    std::fs::create_dir(&server_dir).unwrap();
    let Some(mut server) = Server::create(Kind::Postgres, &server_dir) else {
        return;
    };
    let (url, store) = server.database().await;
    let mut sims = Reap(vec![
        sim(d, "s1", &["--latency-ms", "300-600"]),
        sim(d, "s2", &["--profile", "huawei", "--latency-ms", "300-600"]),
    ]);
    let n = 24;
    queue_campaign(&store, n, "+86135").await;
    let mut first = Reap(vec![daemon(d, &url, &["s1", "s2"])]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while records(d).len() < 6 {
        assert!(Instant::now() < deadline, "the campaign did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.crash();
    // Customers reply while it is down.
    for (s, line) in [
        (0, "incoming +8613900000011 改到周三\n"),
        (1, "incoming +8613900000012 退订\n"),
    ] {
        sims.0[s]
            .stdin
            .as_mut()
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
    }
    // Past the parts' record timeout: the parts on the wire are acknowledged
    // and journaled, their reports (routed on s2) too.
    tokio::time::sleep(Duration::from_secs(14)).await;
    let sent_while_down = records(d).len();
    first.0[0].kill().unwrap();
    first.0[0].wait().unwrap();
    first.0.clear();
    let journal_before = std::fs::read_dir(d).unwrap().filter_map(|e| e.ok()).count();
    assert!(journal_before > 0);
    server.start();
    let _second = Reap(vec![daemon(d, &url, &["s1", "s2"])]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let rows = loop {
        let mut rows = Vec::new();
        for id in 1..=n as i64 {
            if let Ok(Some(row)) = store.get(id).await {
                rows.push(row);
            }
        }
        if rows.len() == n
            && rows
                .iter()
                .all(|r| r.state == "sent" && r.delivery == "delivered")
        {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "not all sent and delivered: {:?}\n{}",
            rows.iter()
                .filter(|r| !(r.state == "sent" && r.delivery == "delivered"))
                .map(|r| (r.id, r.state, r.delivery))
                .collect::<Vec<_>>(),
            std::fs::read_to_string(d.join("daemon.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let mut seen: HashMap<(String, u8), usize> = HashMap::new();
    for r in records(d) {
        *seen.entry((r.to, r.part)).or_default() += 1;
    }
    assert!(
        seen.values().all(|c| *c == 1),
        "a part went twice: {seen:?}"
    );
    assert_eq!(rows.len(), n);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = inbox_count(Kind::Postgres, &url, "%13900000011", "改到周三").await;
        let b = inbox_count(Kind::Postgres, &url, "%13900000012", "退订").await;
        if a == 1 && b == 1 {
            break;
        }
        assert!(a <= 1 && b <= 1, "stored twice: {a} {b}");
        assert!(Instant::now() < deadline, "incoming lost: {a} {b}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(store.is_opted_out("13900000012").await.unwrap());
    let log = std::fs::read_to_string(d.join("daemon.log")).unwrap();
    assert!(
        log.contains("modem events kept from before the restart"),
        "the journal was used ({sent_while_down} parts on the network when the daemon was killed): {log}"
    );
}
