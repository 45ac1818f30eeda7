//! `smsgw doctor` against simulated modems on real ptys: a healthy modem, a SIM
//! that wants a PIN (without and with it), a modem off the network, a port that
//! does not exist. Each finding is what a technician would act on.

use crate::daemon_faults::{sim, Reap};
use std::process::{Command, Output};

fn doctor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .arg("doctor")
        .args(args)
        .args(["--timeout", "20"])
        .output()
        .unwrap()
}

fn doctor_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .arg("doctor")
        .args(args)
        .args(["--timeout", "20"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn doctor_explains_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _sims = Reap(vec![
        sim(d, "ok", &["--profile", "huawei"]),
        sim(d, "pin", &["--pin", "2468"]),
        sim(d, "off", &["--deregistered"]),
    ]);
    let dev = |n: &str| d.join(n).display().to_string();

    let o = doctor(&["--device", &dev("ok")]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("answers AT commands at 115200 baud"), "{t}");
    assert!(t.contains("ready to send"), "{t}");
    assert!(t.contains("SMS centre"), "{t}");
    assert!(!t.contains("PROBLEM"), "{t}");

    let o = doctor(&["--device", &dev("pin")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("asks for a PIN"), "{}", text(&o));
    // The PIN on standard input, and in the environment; never in argv.
    let o = doctor_stdin(&["--device", &dev("pin"), "--pin-stdin"], "2468\n");
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("2468"), "the PIN is never printed");
    let o = Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .args(["doctor", "--device", &dev("pin"), "--timeout", "20"])
        .env("SMSGW_DOCTOR_PIN", "2468")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = doctor(&["--device", &dev("pin"), "--pin", "2468"]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("--pin is refused") && e.contains("--pin-stdin"),
        "{e}"
    );
    assert!(!e.contains("2468"), "{e}");

    let o = doctor(&["--device", &dev("off")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not registered"), "{}", text(&o));

    let o = doctor(&["--device", "/dev/serial/by-id/usb-nothing-here"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("cannot use /dev/serial/by-id/usb-nothing-here"),
        "{}",
        text(&o)
    );
}
