//! The status socket and the technician's CLI against a running daemon (SQLite,
//! two simulated modems on real ptys): every request, malformed and hostile
//! clients, authorisation by peer credentials, and the CLI's output.

use serde_json::Value;
use smsgw::config::{Config, Modem};
use smsgw::daemon::Daemon;
use smsgw::store::{NewMessage, Store};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn modem(id: &str, device: &str) -> Modem {
    Modem::new(id, device)
}

/// Runs the CLI off the async runtime (the daemon keeps running on it).
async fn cli(args: Vec<String>, as_nobody: bool) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_smsgw"));
        c.args(&args).env_remove("SMSGW_CONFIG");
        if as_nobody {
            c.uid(65534).gid(65534);
        }
        c.output().unwrap()
    })
    .await
    .unwrap()
}

/// Runs the CLI as another user (no supplementary groups).
async fn cli_as(args: Vec<String>, uid: u32, gid: u32) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_smsgw"))
            .args(&args)
            .env_remove("SMSGW_CONFIG")
            .uid(uid)
            .gid(gid)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(sock: &Path, a: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = a.iter().map(|s| s.to_string()).collect();
    v.push("--socket".into());
    v.push(sock.display().to_string());
    v
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A raw protocol client: one line out, one line back.
struct Raw {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Raw {
    fn connect(p: &Path) -> Raw {
        let s = UnixStream::connect(p).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    fn ask(&mut self, line: &str) -> Value {
        self.w.write_all(line.as_bytes()).unwrap();
        self.w.write_all(b"\n").unwrap();
        let mut out = String::new();
        self.r.read_line(&mut out).unwrap();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out:?}"))
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

async fn wait_until<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn state_of(store: &Store, id: i64) -> String {
    store.get(id).await.unwrap().unwrap().state.to_string()
}

async fn wait_state(store: &Store, id: i64, want: &str) {
    for _ in 0..300 {
        if state_of(store, id).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "message {id} never became {want}: {:?}",
        store.get(id).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_socket_protocol_authorisation_and_cli() {
    let dir = tempfile::tempdir().unwrap();
    // Others must traverse the directory to reach the socket (the nobody test).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::env::set_var("STATE_DIRECTORY", dir.path());
    let sock: PathBuf = dir.path().join("run/status.sock");
    let mut cfg = Config::default();
    cfg.database.url = format!("sqlite://{}/c.db", dir.path().display());
    cfg.modems = vec![
        modem("m1", "sim:generic:5-20"),
        modem("m2", "sim:huawei:5-20"),
    ];
    cfg.quiet_hours.windows.clear();
    cfg.sending.poll_secs = 1;
    cfg.status.socket = sock.display().to_string();
    cfg.status.read_group = Some("nogroup".into());
    cfg.status.operator_group = Some("adm".into());
    cfg.validate().unwrap();
    let daemon = Daemon::start_from(cfg, Some("ctl".into()), Some("/etc/x.toml".into()))
        .await
        .unwrap();
    let store: Store = daemon.store.clone();
    assert!(daemon.initialised(Duration::from_secs(30)).await);

    // The socket file: 0666 (the daemon judges every peer itself), made without
    // a chown: its group is simply ours.
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o666);
    assert_eq!(meta.gid(), nix::unistd::getegid().as_raw());

    // --- The protocol, request by request ---------------------------------
    let mut c = Raw::connect(&sock);
    let s = c.ask(r#"{"v":1,"req":"summary"}"#);
    assert_eq!(s["ok"], true, "{s}");
    assert_eq!(s["data"]["database"]["backend"], "sqlite");
    assert_eq!(s["data"]["database"]["ok"], true);
    assert_eq!(s["data"]["config_file"], "/etc/x.toml");
    assert_eq!(s["data"]["modems_total"], 2);
    let m = c.ask(r#"{"v":1,"req":"modems"}"#);
    let ms = m["data"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[0]["id"], "m1");
    assert_eq!(ms[0]["state"], "ready");
    assert!(ms[0]["signal_dbm"].as_i64().unwrap() < 0, "{m}");
    assert!(ms[1]["imei"].as_str().unwrap().len() >= 14, "{m}");
    let q = c.ask(r#"{"v":1,"req":"queue"}"#);
    assert_eq!(q["ok"], true);
    assert_eq!(q["data"]["sent_last_hour"], 0);
    // Malformed requests get typed refusals and the connection stays usable.
    assert_eq!(code(&c.ask("{nope")), "bad_json");
    assert_eq!(
        code(&c.ask(r#"{"v":1,"req":"format_disk"}"#)),
        "unknown_request"
    );
    assert_eq!(
        code(&c.ask(r#"{"v":7,"req":"summary"}"#)),
        "unsupported_version"
    );
    assert_eq!(code(&c.ask(r#"{"v":1,"req":"cancel"}"#)), "bad_request");
    assert_eq!(code(&c.ask(r#"{"v":1,"req":"message"}"#)), "bad_request");
    assert_eq!(
        code(&c.ask(r#"{"v":1,"req":"message","id":999}"#)),
        "not_found"
    );
    assert_eq!(
        code(&c.ask(r#"{"v":1,"req":"pause","modem":"m9"}"#)),
        "not_found"
    );
    assert_eq!(c.ask(r#"{"v":1,"req":"summary"}"#)["ok"], true);
    // Oversized: refused, then the daemon hangs up on that client.
    drop(c);
    let mut big = Raw::connect(&sock);
    let huge = format!(
        r#"{{"v":1,"req":"summary","pad":"{}"}}"#,
        "x".repeat(40_000)
    );
    let _ = big.w.write_all(huge.as_bytes());
    let mut line = String::new();
    big.r.read_line(&mut line).unwrap();
    assert!(line.contains("too_large"), "{line}");
    let mut rest = Vec::new();
    assert_eq!(
        big.r.read_to_end(&mut rest).unwrap_or(0),
        0,
        "connection closed"
    );
    // A client that asks a lot and disconnects without reading.
    {
        let mut rude = UnixStream::connect(&sock).unwrap();
        for _ in 0..200 {
            let _ = rude.write_all(b"{\"v\":1,\"req\":\"modems\"}\n");
        }
    }
    // Many clients at once: past the ordinary and the reserved slots, a
    // client is told so and closed; the daemon still answers the next.
    let mut many: Vec<Raw> = (0..40).map(|_| Raw::connect(&sock)).collect();
    let mut last = many.pop().unwrap();
    let mut busy = String::new();
    last.r.read_line(&mut busy).unwrap();
    assert!(busy.contains("\"busy\""), "{busy}");
    drop(many);
    // The daemon sees those 39 hang-ups on its own time: until it has, a new
    // client may still be told "busy". Within seconds it is answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = Raw::connect(&sock).ask(r#"{"v":1,"req":"summary"}"#);
        if reply["ok"] == true {
            break;
        }
        assert_eq!(code(&reply), "busy", "{reply}");
        assert!(std::time::Instant::now() < deadline, "still busy: {reply}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // --- The CLI -----------------------------------------------------------
    let o = cli(args(&sock, &["status"]), false).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("database  sqlite"), "{out}");
    assert!(out.contains("modems    2/2 ready"), "{out}");
    assert!(
        out.contains("m1") && out.contains("m2") && out.contains("QUEUE"),
        "{out}"
    );
    assert!(out.contains("dBm"), "signal shown: {out}");
    let o = cli(args(&sock, &["status", "--json"]), false).await;
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["modems"].as_array().unwrap().len(), 2);
    let o = cli(
        args(&sock, &["watch", "--count", "2", "--interval", "1"]),
        false,
    )
    .await;
    assert!(o.status.success());
    assert_eq!(stdout(&o).matches("QUEUE").count(), 2);

    // Pause everything: a new message waits; resume: it goes.
    let o = cli(args(&sock, &["pause"]), false).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("paused"));
    let id = store
        .enqueue(&NewMessage::new(
            "+8613800138001",
            "您好，您的预约在明天上午9点。",
        ))
        .await
        .unwrap()
        .id;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(state_of(&store, id).await, "queued", "paused: nothing sent");
    let o = cli(args(&sock, &["status"]), false).await;
    assert!(stdout(&o).contains("PAUSED"), "{}", stdout(&o));
    cli(args(&sock, &["resume"]), false).await;
    wait_state(&store, id, "sent").await;
    let o = cli(args(&sock, &["message", &id.to_string()]), false).await;
    let out = stdout(&o);
    assert!(
        out.contains(&format!("message {id}")) && out.contains("state sent"),
        "{out}"
    );
    assert!(out.contains("part 1/1"), "{out}");
    let o = cli(args(&sock, &["message", "--to", "13800138001"]), false).await;
    assert!(
        stdout(&o).contains(&format!("message {id}")),
        "national form finds it"
    );

    // Pause one modem: its work goes to the other.
    let o = cli(args(&sock, &["pause", "m1"]), false).await;
    assert!(o.status.success());
    let o = cli(args(&sock, &["modems"]), false).await;
    assert!(stdout(&o).contains("ready PAUSED"), "{}", stdout(&o));
    let id2 = store
        .enqueue(&NewMessage::new("+8613800138002", "排队提醒：请到3号窗口"))
        .await
        .unwrap()
        .id;
    wait_state(&store, id2, "sent").await;
    assert_eq!(
        store.get(id2).await.unwrap().unwrap().modem.as_deref(),
        Some("m2")
    );
    cli(args(&sock, &["resume", "m1"]), false).await;

    // Cancel a scheduled message; a sent one cannot be cancelled; retry brings one back.
    let mut later = NewMessage::new("+8613800138003", "明天的提醒");
    later.send_at = Some(chrono::Utc::now() + chrono::Duration::hours(2));
    let id3 = store.enqueue(&later).await.unwrap().id;
    let o = cli(args(&sock, &["cancel", &id3.to_string()]), false).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(state_of(&store, id3).await, "cancelled");
    let o = cli(args(&sock, &["cancel", &id.to_string()]), false).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is sent"), "{}", stderr(&o));
    let o = cli(args(&sock, &["retry", &id3.to_string()]), false).await;
    assert!(o.status.success(), "{}", stderr(&o));
    wait_state(&store, id3, "sent").await;

    // Release ambiguous messages: one failed, one resent.
    let mut held = Vec::new();
    for n in 4..6 {
        let mut m = NewMessage::new(&format!("+861380013800{n}"), "held");
        m.send_at = Some(chrono::Utc::now() + chrono::Duration::hours(2));
        let hid = store.enqueue(&m).await.unwrap().id;
        store
            .execute_raw(&format!(
                "UPDATE outbox SET state = 'ambiguous', last_error = 'test' WHERE id = {hid}"
            ))
            .await
            .unwrap();
        held.push(hid);
    }
    let o = cli(
        args(&sock, &["release", &held[0].to_string(), "fail"]),
        false,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(state_of(&store, held[0]).await, "failed");
    let o = cli(
        args(&sock, &["release", &held[1].to_string(), "resend"]),
        false,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    wait_state(&store, held[1], "sent").await;

    // A test message through a chosen modem reaches the (simulated) network.
    let o = cli(
        args(
            &sock,
            &[
                "test-send",
                "--modem",
                "m2",
                "--to",
                "+8613900139000",
                "--text",
                "测试短信",
            ],
        ),
        false,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("message references"), "{}", stdout(&o));
    let sub = daemon.sims["m2"].submitted();
    assert!(sub
        .iter()
        .any(|s| s.to.ends_with("8613900139000") && s.text == "测试短信"));

    // Reset a modem: it goes away and comes back ready.
    let o = cli(args(&sock, &["reset", "m1"]), false).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let h = daemon.modems()[0].clone();
    wait_until("m1 to reset", || {
        h.status().state != smsgw::modem::ModemState::Ready
    })
    .await;
    wait_until("m1 ready again", || {
        h.status().state == smsgw::modem::ModemState::Ready
    })
    .await;

    // The queue view counts what happened.
    let o = cli(args(&sock, &["queue"]), false).await;
    let out = stdout(&o);
    assert!(out.contains("sent") && out.contains("failed"), "{out}");
    assert!(out.contains("last hour: 4 sent"), "{out}");

    // --- Authorisation by peer credentials ---------------------------------
    if nix::unistd::getuid().is_root() {
        // nobody (uid 65534) reaches the socket through its group, may read, may not steer.
        let o = cli(args(&sock, &["status"]), true).await;
        assert!(o.status.success(), "reads are open: {}", stderr(&o));
        let o = cli(args(&sock, &["pause"]), true).await;
        assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
        assert!(stderr(&o).contains("allowed to"), "{}", stderr(&o));
        assert!(stderr(&o).contains("\"adm\""), "{}", stderr(&o));
        assert!(
            !daemon.steer.all_paused(),
            "the refused pause had no effect"
        );
        // An operator (primary group adm, no other group) steers.
        let o = cli_as(args(&sock, &["pause"]), 12_346, 4).await;
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(daemon.steer.all_paused());
        let o = cli_as(args(&sock, &["resume"]), 12_346, 4).await;
        assert!(o.status.success(), "{}", stderr(&o));
        // An outsider is refused before it may even read, with who may.
        let o = cli_as(args(&sock, &["status"]), 12_345, 12_345).await;
        assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("the status socket is for")
                && stderr(&o).contains("\"nogroup\" or \"adm\""),
            "{}",
            stderr(&o)
        );
    } else {
        eprintln!("not root: the refusal of another user's control request is not exercised");
    }

    // --- A daemon that is not running: a human error -------------------------
    // Idle clients filling every connection slot do not hold up the stop.
    let idle: Vec<Raw> = (0..40).map(|_| Raw::connect(&sock)).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(30), daemon.shutdown())
        .await
        .expect("stops with idle clients connected");
    drop(idle);
    assert!(!sock.exists(), "the socket file is removed at stop");
    let o = cli(args(&sock, &["status"]), false).await;
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("is smsgw running? (systemctl status smsgw)"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn a_second_daemon_does_not_steal_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let _first = smsgw::control::server::bind(&sock).await.unwrap();
    let e = smsgw::control::server::bind(&sock)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("already listening"), "{e}");
    // A stale file (no listener behind it) is replaced.
    drop(_first);
    let again = smsgw::control::server::bind(&sock).await;
    assert!(again.is_ok(), "{:?}", again.err());
}

/// `[status] socket` pointing at something that is not a socket (a typo naming
/// the database, a directory, a symlink planted in a shared directory) is
/// refused, and the thing is left exactly as it was.
#[tokio::test]
async fn the_socket_path_never_removes_or_follows_what_is_not_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("smsgw.db");
    std::fs::write(&db, b"SQLite format 3\0 precious").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = smsgw::control::server::bind(&db)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("a regular file, not a socket"), "{e}");
    assert_eq!(std::fs::read(&db).unwrap(), b"SQLite format 3\0 precious");
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let e = smsgw::control::server::bind(&sub)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("a directory"), "{e}");
    assert!(sub.is_dir());
    // A symlink to the database: neither removed nor followed (a chmod through
    // it would make the database 0666).
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&db, &link).unwrap();
    let e = smsgw::control::server::bind(&link)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("a symbolic link"), "{e}");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(std::fs::metadata(&db).unwrap().mode() & 0o777, 0o600);
    // A dangling symlink is not a socket either.
    let dangling = dir.path().join("dangling.sock");
    std::os::unix::fs::symlink(dir.path().join("nothing"), &dangling).unwrap();
    assert!(smsgw::control::server::bind(&dangling).await.is_err());
    assert!(
        !dir.path().join("nothing").exists(),
        "not created through the link"
    );
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_endpoint_counts_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("STATE_DIRECTORY", dir.path());
    let mut cfg = Config::default();
    cfg.database.url = format!("sqlite://{}/m.db", dir.path().display());
    cfg.modems = vec![modem("m1", "sim:generic:5-20")];
    cfg.quiet_hours.windows.clear();
    cfg.sending.poll_secs = 1;
    cfg.status.socket = String::new();
    cfg.metrics.enabled = true;
    cfg.metrics.listen = "127.0.0.1:0".into();
    cfg.validate().unwrap();
    let daemon = Daemon::start(cfg, Some("metrics".into())).await.unwrap();
    let addr = daemon.metrics.expect("metrics enabled");
    assert!(addr.ip().is_loopback());
    let store = daemon.store.clone();
    let long = "中秋快乐！".repeat(20); // 100 UCS2 characters: two parts
    let id = store
        .enqueue(&NewMessage::new("+8613800138009", &long))
        .await
        .unwrap()
        .id;
    wait_state(&store, id, "sent").await;
    // Gauges refresh every 5 s (queue depth every 15 s); the first pass runs at once.
    let mut body = String::new();
    for _ in 0..100 {
        body = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
            .await
            .unwrap();
        if body.contains("smsgw_modem_up{modem=\"m1\"} 1")
            && body.contains("smsgw_queue_messages{state=\"sent\"} 1")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(body.starts_with("HTTP/1.0 200 OK"), "{body}");
    assert!(
        body.contains("smsgw_parts_sent_total{modem=\"m1\"} 2"),
        "{body}"
    );
    assert!(
        body.contains("smsgw_messages_total{outcome=\"sent\"} 1"),
        "{body}"
    );
    assert!(body.contains("smsgw_modem_up{modem=\"m1\"} 1"), "{body}");
    assert!(
        body.contains("smsgw_modem_state{modem=\"m1\",state=\"ready\"} 1")
            && body.contains("smsgw_modem_state{modem=\"m1\",state=\"degraded\"} 0"),
        "{body}"
    );
    assert!(
        body.contains("smsgw_modem_signal_dbm{modem=\"m1\"}"),
        "{body}"
    );
    assert!(
        body.contains("smsgw_queue_messages{state=\"sent\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("smsgw_send_duration_seconds_bucket{modem=\"m1\",le=\"0.5\"}"),
        "a histogram, not a summary: {body}"
    );
    assert!(
        body.contains("smsgw_queue_wait_seconds_count 1"),
        "one message waited and went: {body}"
    );
    let other = tokio::task::spawn_blocking(move || http_get(addr, "/"))
        .await
        .unwrap();
    assert!(other.starts_with("HTTP/1.0 404"), "{other}");
    daemon.shutdown().await;
}

/// The database goes away under a running daemon: `smsgw status` still answers,
/// says so, and shows the modems; requests that need the database say why they fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_still_answers_when_the_database_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("STATE_DIRECTORY", dir.path());
    let Some((url, drop_db)) = crate::daemon_faults::database("postgres", dir.path()).await else {
        return;
    };
    let (admin, drop_sql) = drop_db.expect("a server database");
    let sock = dir.path().join("s.sock");
    let mut cfg = Config::default();
    cfg.database.url = url;
    cfg.modems = vec![modem("m1", "sim:generic:5-20")];
    cfg.sending.poll_secs = 1;
    cfg.status.socket = sock.display().to_string();
    cfg.validate().unwrap();
    let daemon = Daemon::start(cfg, Some("dbgone".into())).await.unwrap();
    assert!(daemon.initialised(Duration::from_secs(30)).await);
    let o = cli(args(&sock, &["status"]), false).await;
    assert!(stdout(&o).contains("database  postgres"), "{}", stdout(&o));
    // The database disappears (connections killed, then dropped).
    admin.execute_raw(&drop_sql).await.unwrap();
    let o = cli(args(&sock, &["status"]), false).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("UNREACHABLE"), "{out}");
    assert!(out.contains("messages  unknown"), "{out}");
    assert!(out.contains("unavailable: database"), "{out}");
    assert!(out.contains("m1"), "the modems are still shown: {out}");
    let o = cli(args(&sock, &["message", "1"]), false).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("database"), "{}", stderr(&o));
    // The daemon itself is unharmed and stops cleanly.
    tokio::time::timeout(Duration::from_secs(30), daemon.shutdown())
        .await
        .expect("a clean stop without the database");
}
