//! The daemon's log read as journald reads it (one entry per line, priority
//! prefix first): a sender, a text and a modem's lines cannot start a forged
//! entry, and the SIM PIN never appears, at trace level and across a reboot
//! of the modem that makes the daemon enter it again.

use super::daemon_faults::{sim, Reap};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PIN: &str = "48213";

fn wait_for(log: &std::path::Path, what: &str, times: usize, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(what).count() >= times {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{what:?} not logged {times} times:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn no_value_from_outside_forges_a_log_line_or_shows_the_pin() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut sims = Reap(vec![sim(
        d,
        "s1",
        // SIMCom: echo on after a reboot, and "RDY" announces it.
        &["--profile", "simcom", "--pin", PIN, "--latency-ms", "5-20"],
    )]);
    let cfg = d.join("smsgw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"sqlite://{db}\"\n\n[status]\nsocket = \"{sock}\"\n\n\
             [log]\nformat = \"journald\"\nbodies = true\n\n\
             [[modem]]\nid = \"s1\"\ndevice = \"{dev}\"\npin = \"{PIN}\"\n",
            db = d.join("smsgw.db").display(),
            sock = d.join("status.sock").display(),
            dev = d.join("s1").display(),
        ),
    )
    .unwrap();
    let log = d.join("daemon.log");
    let daemon = Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "smsgw=trace")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut daemon = Reap(vec![daemon]);
    wait_for(&log, "state=Ready", 1, 30);

    // An alphanumeric sender may hold a newline (it is in the GSM alphabet);
    // the text holds CR, LF, ESC and a journald priority prefix.
    let stdin = sims.0[0].stdin.as_mut().unwrap();
    writeln!(
        stdin,
        "incoming Ab\\n<3>root 祝您\\n<3>FORGED body\\r<2>x\\x1b[2J生日快乐"
    )
    .unwrap();
    wait_for(&log, "incoming body", 1, 30);
    // The modem reboots: the daemon finds the SIM locked and enters the PIN again.
    writeln!(stdin, "reboot").unwrap();
    wait_for(&log, "announced a reboot", 1, 30);
    wait_for(&log, "state=Ready", 2, 60);
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .matches("cmd=AT+CPIN=****")
            .count()
            >= 2,
        "the PIN was entered again after the reboot"
    );

    let pid = daemon.0[0].id() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGTERM).unwrap();
    let _ = daemon.0[0].wait();
    let text = std::fs::read_to_string(&log).unwrap();

    let mut entries = 0;
    for line in text.lines() {
        entries += 1;
        let b = line.as_bytes();
        assert!(
            b.len() >= 3 && b[0] == b'<' && b[1].is_ascii_digit() && b[2] == b'>',
            "a line that is not an entry of the daemon's own: {line:?}"
        );
        assert!(!line.contains(PIN), "the PIN is in the log: {line:?}");
        assert!(
            !line.chars().any(|c| c.is_control()),
            "a control character in {line:?}"
        );
    }
    assert!(entries > 20, "trace level logged little:\n{text}");
    // The values were logged, escaped, not dropped.
    assert!(
        text.contains(r"Ab\n<3>root"),
        "sender not in the log:\n{text}"
    );
    assert!(text.contains(r"祝您\n<3>FORGED body\r<2>x"), "{text}");
    assert!(
        text.contains("+CPIN=****"),
        "the PIN entry, masked:\n{text}"
    );
}
