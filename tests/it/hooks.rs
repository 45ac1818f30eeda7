//! `[hooks]` with gammu's conventions, on a real daemon: run_on_sent and
//! run_on_receive get the ids and gammu's environment after the commit; a
//! hanging run_on_failure is killed at its timeout, logged, and the message
//! stays as it was (nothing resent).

use super::daemon_faults::{migrated, records, sim, Reap};
use smsgw::store::{NewMessage, State};
use std::io::Write;
use std::time::{Duration, Instant};

#[tokio::test]
async fn hooks_run_after_commit_with_gammus_environment_and_a_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let url = format!("sqlite://{}", d.join("smsgw.db").display());
    let store = migrated(&url).await;
    let script = |name: &str, body: &str| {
        let p = d.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.display().to_string()
    };
    let out = d.join("out");
    let o = out.display();
    let sent = script(
        "sent",
        &format!("echo \"sent $1 $PHONE_ID $SMS_1_NUMBER\" >> {o}"),
    );
    let recv = script(
        "recv",
        &format!("echo \"recv $1 $SMS_MESSAGES $SMS_1_NUMBER $DECODED_1_TEXT $PHONE_ID\" >> {o}"),
    );
    let fail = script(
        "fail",
        &format!("echo \"fail $1 $SMSGW_STATE\" >> {o}; sleep 60"),
    );
    let mut sims = Reap(vec![sim(d, "s1", &[])]);
    let cfg = d.join("smsgw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"{url}\"\n\n[status]\nsocket = \"\"\n\n\
             [[modem]]\nid = \"s1\"\ndevice = \"{}\"\n\n[sending]\npoll_secs = 1\n\n\
             [hooks]\nrun_on_sent = \"{sent}\"\nrun_on_receive = \"{recv}\"\nrun_on_failure = \"{fail}\"\ntimeout_secs = 1\n",
            d.join("s1").display()
        ),
    )
    .unwrap();
    let log = d.join("smsgw.log");
    let _daemon = Reap(vec![super::restart::daemon(&cfg, &log, &[])]);
    let good = store
        .enqueue(&NewMessage::new("+8613800138000", "您的预约号是 17"))
        .await
        .unwrap()
        .id;
    let bad = store
        .enqueue(&NewMessage::new("not a number", "x"))
        .await
        .unwrap()
        .id;
    writeln!(
        sims.0[0].stdin.as_mut().unwrap(),
        "incoming +8613912345678 退订"
    )
    .unwrap();
    let read = || std::fs::read_to_string(&out).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(read().contains("sent ") && read().contains("recv ") && read().contains("fail ")) {
        assert!(
            Instant::now() < deadline,
            "hooks did not all run: {:?}\n{}",
            read(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lines = read();
    assert!(
        lines.contains(&format!("sent {good} s1 +8613800138000")),
        "{lines}"
    );
    assert!(lines.contains(&format!("fail {bad} rejected")), "{lines}");
    let recv_line = lines.lines().find(|l| l.starts_with("recv ")).unwrap();
    let f: Vec<&str> = recv_line.split(' ').collect();
    assert!(f[1].parse::<i64>().is_ok(), "an inbox id: {recv_line}");
    assert_eq!(
        &f[2..],
        ["1", "+8613912345678", "退订", "s1"],
        "{recv_line}"
    );
    // The hanging hook is cut off at its timeout and logged; nothing is resent.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("killed (not retried)")
    {
        assert!(Instant::now() < deadline, "the hanging hook was not killed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(store.get(good).await.unwrap().unwrap().state, State::Sent);
    assert_eq!(
        store.get(bad).await.unwrap().unwrap().state,
        State::Rejected
    );
    assert_eq!(records(d).len(), 1, "the message went out once");
    assert_eq!(
        read().matches("fail ").count(),
        1,
        "a failing hook is not retried"
    );
    assert_eq!(read().matches("sent ").count(), 1);
}
