//! Incoming calls on a real daemon and simulated modems: the caller comes
//! from `+CLIP` (smsgw sends `AT+CLIP=1`), the call is recorded once in
//! `calls`, and hung up where `[[modem]] calls = "hang_up"` (the default), so a
//! ringing modem does not stay busy; `ignore` leaves it ringing.

use super::daemon_faults::{migrated, sim, Reap};
use std::io::Write;
use std::time::{Duration, Instant};

#[tokio::test]
async fn calls_are_recorded_with_their_caller_and_hung_up() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let url = format!("sqlite://{}", d.join("smsgw.db").display());
    let store = migrated(&url).await;
    let mut sims = Reap(vec![
        sim(d, "s1", &[]),
        sim(d, "s2", &[]),
        sim(d, "s3", &[]),
    ]);
    let cfg = d.join("smsgw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"{url}\"\n\n[status]\nsocket = \"\"\n\n\
             [[modem]]\nid = \"s1\"\ndevice = \"{}\"\n\n\
             [[modem]]\nid = \"s2\"\ndevice = \"{}\"\ncalls = \"ignore\"\n\n\
             [[modem]]\nid = \"s3\"\ndevice = \"{}\"\n",
            d.join("s1").display(),
            d.join("s2").display(),
            d.join("s3").display()
        ),
    )
    .unwrap();
    let log = d.join("smsgw.log");
    let _daemon = Reap(vec![super::restart::daemon(&cfg, &log, &[])]);
    // Once both modems are up (they answer AT+CLIP=1 during initialisation).
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("state=Ready")
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "modems not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    writeln!(sims.0[0].stdin.as_mut().unwrap(), "ring +8613912345678").unwrap();
    writeln!(sims.0[1].stdin.as_mut().unwrap(), "ring +8613700000000").unwrap();
    // A modem that gives no +CLIP, and a caller who gives up after one ring.
    writeln!(sims.0[2].stdin.as_mut().unwrap(), "ring - 1").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let calls = loop {
        let c = store
            .calls_after(0, chrono::Utc::now() + chrono::Duration::days(1), 10)
            .await
            .unwrap();
        if c.len() >= 3 {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "calls not recorded: {c:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let s1 = calls.iter().find(|(_, c)| c.modem == "s1").unwrap();
    let s2 = calls.iter().find(|(_, c)| c.modem == "s2").unwrap();
    assert_eq!(s1.1.caller.as_deref(), Some("+8613912345678"));
    assert!(s1.1.hung_up, "{s1:?}");
    assert_eq!(s2.1.caller.as_deref(), Some("+8613700000000"));
    assert!(!s2.1.hung_up, "{s2:?}");
    let s3 = calls.iter().find(|(_, c)| c.modem == "s3").unwrap();
    assert_eq!(s3.1.caller, None, "{s3:?}");
    assert!(!s3.1.hung_up, "it had ended: {s3:?}");
    // Someone else calls s1 three seconds after smsgw hung up: a call of its own.
    tokio::time::sleep(Duration::from_secs(3)).await;
    writeln!(sims.0[0].stdin.as_mut().unwrap(), "ring +8613555555555").unwrap();
    // A call is one row, however many times it rings.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let all = store
        .calls_after(0, chrono::Utc::now() + chrono::Duration::days(1), 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all.iter().any(|(_, c)| c.modem == "s1"
        && c.caller.as_deref() == Some("+8613555555555")
        && c.hung_up));
    let l = std::fs::read_to_string(&log).unwrap();
    assert_eq!(l.matches("incoming call").count(), 4, "{l}");
}
