//! The `smsgw` binary as a technician runs it: output, exit codes, messages.

use std::process::{Command, Output};

fn smsgw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .args(args)
        .output()
        .expect("run smsgw")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn pdu_decode_prints_json() {
    let o = smsgw(&[
        "pdu",
        "decode",
        "--compact",
        "0891683108100005F011000D91683109423346F90008000A5DE54F5C61095FEBFF01",
    ]);
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["type"], "SMS-SUBMIT");
    assert_eq!(v["destination"]["number"], "+8613902433649");
    assert_eq!(v["user_data"]["text"], "工作愉快！");
    assert_eq!(v["dcs"]["alphabet"], "ucs2");
    assert_eq!(v["smsc"]["number"], "+8613800100500");
    assert_eq!(v["tpdu_len"], 25);
}

#[test]
fn pdu_decode_status_report_has_status_and_utc_times() {
    let o = smsgw(&[
        "pdu",
        "decode",
        "--compact",
        "079124603050020006E80C91666666666666909070618422809090706184628000",
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["type"], "SMS-STATUS-REPORT");
    assert_eq!(v["message_reference"], 232);
    assert_eq!(v["status"]["st"], serde_json::Value::Null);
    assert_eq!(v["status"]["raw"], "00");
    assert_eq!(v["status"]["final"], true);
    assert_eq!(v["status"]["delivered"], true);
    assert_eq!(v["discharge_time"]["local"], "09/09/07,16:48:26+08");
    assert_eq!(v["discharge_time"]["utc"], "2009-09-07T14:48:26+00:00");
}

#[test]
fn pdu_decode_invalid_input_exits_2_with_a_clear_message() {
    for bad in ["zz", "123", "0891683108100005F011000D9168"] {
        let o = smsgw(&["pdu", "decode", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("cannot decode PDU"), "{err}");
        assert!(o.stdout.is_empty());
    }
    let o = smsgw(&["pdu", "decode", "0891683108100005F011000D9168"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("da: truncated"));
}

#[test]
fn pdu_encode_prints_one_line_per_part() {
    let text = "中秋快乐！".repeat(20); // 100 UCS2 units: two parts
    let o = smsgw(&[
        "pdu",
        "encode",
        "--to",
        "+8613800138000",
        "--report",
        "--ref",
        "7",
        &text,
    ]);
    assert!(o.status.success(), "{o:?}");
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let mut joined = String::new();
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"], i as u64 + 1);
        assert_eq!(l["total"], 2);
        let pdu = l["pdu"].as_str().unwrap();
        // cmgs_len is the TPDU length: the PDU minus the one-octet "00" SMSC field.
        assert_eq!(l["cmgs_len"].as_u64().unwrap() as usize, pdu.len() / 2 - 1);
        let d = smsgw(&["pdu", "decode", "--compact", pdu]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&d)).unwrap();
        assert_eq!(v["status_report_request"], true);
        assert_eq!(
            v["user_data"]["udh"][0]["concat8"],
            serde_json::json!([7, 2, i + 1])
        );
        joined.push_str(v["user_data"]["text"].as_str().unwrap());
    }
    assert_eq!(joined, text);
}

#[test]
fn pdu_encode_options_reach_the_pdu() {
    let o = smsgw(&[
        "pdu",
        "encode",
        "--to",
        "10086",
        "--smsc",
        "+8613800100500",
        "--validity",
        "1440",
        "--flash",
        "hi",
    ]);
    assert!(o.status.success());
    let l: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let d = smsgw(&["pdu", "decode", "--compact", l["pdu"].as_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&d)).unwrap();
    assert_eq!(v["smsc"]["number"], "+8613800100500");
    assert_eq!(v["destination"]["number"], "10086");
    assert_eq!(v["validity"]["minutes"], 1440);
    assert_eq!(v["dcs"]["class"], 0);
    assert_eq!(v["status_report_request"], false);
}

#[test]
fn pdu_encode_rejects_bad_input_with_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["pdu", "encode", "--to", "138-0013", "x"],
            "invalid to number",
        ),
        (
            &["pdu", "encode", "--to", "10086", "--smsc", "abc", "x"],
            "invalid smsc number",
        ),
        (
            &[
                "pdu",
                "encode",
                "--to",
                "10086",
                "--max-parts",
                "1",
                &"x".repeat(200),
            ],
            "needs 2 parts",
        ),
        (
            &["pdu", "encode", "--to", "10086", "--ref", "300", "x"],
            "--ref must be 0-255",
        ),
    ];
    for (args, msg) in cases {
        let o = smsgw(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(msg), "{args:?}: {err}");
    }
}

#[test]
fn sim_command_serves_a_pty_at_the_link() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("modem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .args([
            "sim",
            "--profile",
            "simcom",
            "--link",
            link.to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("simulated simcom modem"), "{first}");
    let mut port = serialport::new(link.to_str().unwrap(), 115_200)
        .timeout(std::time::Duration::from_millis(300))
        .open()
        .expect("open the simulated modem like a serial port");
    port.write_all(b"ATE0\rAT+CGMI\r").unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !String::from_utf8_lossy(&got).contains("SIMCOM_Ltd\r\n\r\nOK")
        && std::time::Instant::now() < deadline
    {
        let mut buf = [0u8; 256];
        if let Ok(n) = port.read(&mut buf) {
            got.extend(&buf[..n]);
        }
    }
    assert!(
        String::from_utf8_lossy(&got).contains("SIMCOM_Ltd"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    child.stdin.as_mut().unwrap().write_all(b"quit\n").unwrap();
    assert!(child.wait().unwrap().success());
    assert!(!link.exists(), "the link is removed on exit");
}

#[test]
fn sim_command_rejects_bad_options() {
    let o = smsgw(&["sim", "--profile", "nokia"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("known: generic"));
    let o = smsgw(&["sim", "--latency-ms", "9-1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--latency-ms"));
}

#[test]
fn demo_shows_the_whole_flow() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("demo.toml");
    let text = include_str!("../../config/demo.toml")
        .replace(
            "sqlite://demo-state/smsgw.db",
            &format!("sqlite://{}/demo.db", dir.path().display()),
        )
        .replace(":300-900", ":5-20")
        .replace(
            "demo-state/status.sock",
            &format!("{}/status.sock", dir.path().display()),
        );
    std::fs::write(&cfg, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .args(["demo", "--config", cfg.to_str().unwrap()])
        .env("STATE_DIRECTORY", dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("$ smsgw status --socket")
            && out.contains("MODEM")
            && out.contains("huawei-1"),
        "the demo ends with what `smsgw status` shows: {out}"
    );
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("opted out = true"), "{out}");
    let sent_delivered = out
        .lines()
        .filter(|l| l.contains(" sent ") && l.contains("delivered"))
        .count();
    assert_eq!(sent_delivered, 9, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("suppressed") && l.contains("opted out")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("rejected") && l.contains("\"call me\"")),
        "{out}"
    );
    // Six two-part greetings and three one-part reminders.
    assert!(out.contains("network: 15"), "{out}");
}

/// `smsgw inject` takes gammu-smsd-inject's forms (a script changes only the
/// command's name), answers as gammu does, and queues through the contract
/// check of `smsgw enqueue`.
#[test]
fn inject_takes_gammu_smsd_injects_forms() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("smsgw.db");
    let url = format!("sqlite://{}", db.display());
    let inject = |args: &[&str], stdin: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_smsgw"))
            .args(["inject", "--database", &url])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = c.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        c.wait_with_output().unwrap()
    };
    let id = |o: &Output| -> i64 {
        let out = stdout(o);
        out.trim()
            .strip_prefix("Written message with ID ")
            .unwrap_or_else(|| panic!("{out} {}", String::from_utf8_lossy(&o.stderr)))
            .parse()
            .unwrap()
    };
    let row = |id: i64| {
        let o = Command::new("sqlite3")
            .arg(&db)
            .arg(format!(
                "SELECT recipient, body, request_report, flash, expires_at IS NOT NULL FROM outbox WHERE id = {id}"
            ))
            .output()
            .expect("sqlite3 (installed by scripts/test)");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let a = id(&inject(
        &[
            "TEXT",
            "13800138000",
            "-text",
            "您好",
            "-report",
            "-flash",
            "-validity",
            "DAY",
        ],
        None,
    ));
    assert_eq!(row(a), "13800138000|您好|1|1|1");
    let o = inject(
        &["TEXT", "13800138001", "-unicode", "-len", "4"],
        Some("提醒：明天九点\n"),
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("ignored -unicode"));
    assert_eq!(row(id(&o)), "13800138001|提醒：明|0|0|0");
    // Refused as `smsgw enqueue` refuses, with nothing queued.
    for (args, stdin, why) in [
        (&["TEXT", "not-a-number", "-text", "x"][..], None, "to"),
        (&["TEXT", "13800138002"][..], Some(""), "text"),
        (&["MMS", "13800138002"][..], None, "message type"),
    ] {
        let o = inject(args, stdin);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }
    let o = Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT COUNT(*) FROM outbox")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "2");
}

/// `smsgw import-gammu-config` on the smsdrc Debian's gammu-smsd installs: the
/// output is a configuration `smsgw check-config` accepts, and what has no
/// equivalent (the spool-directory service) is said.
#[test]
fn import_gammu_config_reads_debians_smsdrc() {
    let smsdrc = std::path::Path::new("/etc/gammu-smsdrc");
    assert!(
        smsdrc.exists(),
        "Debian's gammu-smsd package (installed by scripts/test) provides /etc/gammu-smsdrc"
    );
    let o = smsgw(&["import-gammu-config", "/etc/gammu-smsdrc"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let toml = stdout(&o);
    assert!(toml.contains("device = \"/dev/null\""), "{toml}");
    assert!(
        toml.contains("NOTE:") && toml.contains("service = files"),
        "{toml}"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("smsgw.toml");
    std::fs::write(&cfg, &toml).unwrap();
    let o = smsgw(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "{toml}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A file that is not there: exit 2, named.
    let o = smsgw(&["import-gammu-config", "/nonexistent/smsdrc"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/smsdrc"));
}
