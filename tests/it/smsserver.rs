//! SMSLib SMSServer's (金笛's) tables served by smsgw on each backend, in
//! smsgw's own database (no table names clash): rows an application inserts
//! into `smsserver_out` are sent once and get `S` with `ref_no` and
//! `sent_date`, or `F` with `errors`; received messages and status reports go
//! into `smsserver_in`, and a call into `smsserver_calls` (hung up).

use super::daemon_faults::{database, records, sim, Reap};
use super::gammu::{drop_all, Gammu};
use std::io::Write;
use std::time::{Duration, Instant};

/// SMSLib's published layout (misc/smsserver/database), per backend; the
/// same text is in docs/integration.md.
fn tables(backend: &str) -> &'static str {
    match backend {
        "mysql" => include_str!("../../docs/smsserver/mysql.sql"),
        "postgres" => include_str!("../../docs/smsserver/postgres.sql"),
        _ => include_str!("../../docs/smsserver/sqlite.sql"),
    }
}

/// smsgw's database with SMSLib's tables in it, a client for them, the
/// backend's local "now", and what drops the database at the end.
struct Site {
    url: String,
    store: smsgw::store::Store,
    db: Gammu,
    now: &'static str,
    drops: Vec<String>,
}

async fn site(backend: &'static str, d: &std::path::Path) -> Option<Site> {
    let (url, dropper) = database(backend, d).await?;
    let name = match backend {
        "sqlite" => d.join("smsgw.db").display().to_string(),
        _ => url.rsplit('/').next().unwrap().to_string(),
    };
    let store = super::daemon_faults::migrated(&url).await;
    for stmt in tables(backend).split(';').filter(|s| !s.trim().is_empty()) {
        store.execute_raw(stmt).await.unwrap();
    }
    let db = Gammu {
        backend,
        url: url.clone(),
        name,
        dir: d.to_path_buf(),
    };
    let now = match backend {
        "sqlite" => "datetime('now', 'localtime')",
        "postgres" => "LOCALTIMESTAMP",
        _ => "NOW()",
    };
    Some(Site {
        url,
        store,
        db,
        now,
        drops: dropper.map(|(_, sql)| vec![sql]).unwrap_or_default(),
    })
}

/// smsgw.toml for one simulated modem and the SMSServer layer.
fn config(d: &std::path::Path, url: &str) -> std::path::PathBuf {
    let cfg = d.join("smsgw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"{url}\"\n\n[status]\nsocket = \"\"\n\n\
             [[modem]]\nid = \"s1\"\ndevice = \"{}\"\n\n[sending]\npoll_secs = 1\n\n\
             [compat]\nsmsserver = true\ngammu_poll_ms = 200\n",
            d.join("s1").display()
        ),
    )
    .unwrap();
    cfg
}

async fn sent_received_reported_and_called(backend: &'static str) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let Some(Site {
        url,
        store: _store,
        db,
        now,
        drops,
    }) = site(backend, d).await
    else {
        return;
    };
    // 600 rows another SMSServer has queued (Q), in front of the new ones:
    // they must not crowd them out of the batch a pass reads.
    let foreign: Vec<String> = (0..600)
        .map(|i| format!("('1399990{i:04}', 'theirs', {now}, 'Q')"))
        .collect();
    db.sql(&format!(
        "INSERT INTO smsserver_out (recipient, text, create_date, status) VALUES {}",
        foreign.join(", ")
    ));
    // Two UCS-2 parts.
    let long = "尊敬的客户：中秋佳节将至，祝您和家人身体健康、阖家幸福、万事如意！本店会员日全场八折，积分可抵现金，详询门店。预约请回复姓名与时间，我们将尽快与您联系确认。";
    for (recipient, text, encoding, report) in [
        ("+8613800138000", long, "U", "1"),
        ("13800138001", "您的预约号是 17", "7", "0"),
        ("13800138002", "binary", "8", "0"),
        ("no number", "x", "7", "0"),
        ("13800138003", "x", "7", "5"),
    ] {
        db.sql(&format!(
            "INSERT INTO smsserver_out (recipient, text, create_date, encoding, status_report) \
             VALUES ('{recipient}', '{text}', {now}, '{encoding}', {report})"
        ));
    }
    let mut sims = Reap(vec![sim(d, "s1", &[])]);
    let cfg = config(d, &url);
    let log = d.join("smsgw.log");
    let mut daemon = Reap(vec![super::restart::daemon(&cfg, &log, &[])]);
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(40);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "{what}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait("every row ends S or F", &|| {
        db.sql(
            "SELECT COUNT(*) FROM smsserver_out WHERE status IN ('U', 'Q') \
             AND recipient NOT LIKE '1399990%'",
        ) == ["0"]
    });
    let out = db.sql(
        "SELECT recipient, status, errors, ref_no IS NOT NULL, sent_date IS NOT NULL FROM smsserver_out \
         WHERE recipient NOT LIKE '1399990%' ORDER BY id",
    );
    let t = |b: bool| {
        if backend == "postgres" {
            if b {
                "t"
            } else {
                "f"
            }
        } else if b {
            "1"
        } else {
            "0"
        }
    };
    assert_eq!(
        out,
        [
            format!("+8613800138000|S|0|{}|{}", t(true), t(true)),
            format!("13800138001|S|0|{}|{}", t(true), t(true)),
            format!("13800138002|F|1|{}|{}", t(false), t(false)),
            format!("no number|F|1|{}|{}", t(false), t(false)),
            format!("13800138003|F|1|{}|{}", t(false), t(false)),
        ],
        "{out:?}"
    );
    let recs = records(d);
    assert_eq!(
        recs.iter()
            .filter(|r| r.to.ends_with("13800138000"))
            .count(),
        2,
        "{recs:?}"
    );
    assert_eq!(
        recs.iter()
            .filter(|r| r.to.ends_with("13800138001"))
            .count(),
        1,
        "{recs:?}"
    );
    assert_eq!(recs.len(), 3, "{recs:?}");
    // The status report of the message that asked for one, by its ref_no.
    wait("status reports in smsserver_in", &|| {
        db.sql("SELECT COUNT(*) FROM smsserver_in WHERE type = 'S'") == ["2"]
    });
    let reports = db.sql(
        "SELECT i.originator, i.text, i.gateway_id FROM smsserver_in i JOIN smsserver_out o \
         ON o.ref_no = i.original_ref_no WHERE i.type = 'S' AND o.recipient = '+8613800138000'",
    );
    assert_eq!(reports, ["+8613800138000|DELIVERED|s1"], "{reports:?}");
    // A received message and a call.
    writeln!(
        sims.0[0].stdin.as_mut().unwrap(),
        "incoming +8613912345678 收到，谢谢"
    )
    .unwrap();
    writeln!(sims.0[0].stdin.as_mut().unwrap(), "ring +8613700000000").unwrap();
    wait("the message in smsserver_in", &|| {
        db.sql("SELECT COUNT(*) FROM smsserver_in WHERE type = 'I'") == ["1"]
    });
    let inbound = db.sql(
        "SELECT originator, encoding, text, gateway_id, process FROM smsserver_in WHERE type = 'I'",
    );
    assert_eq!(inbound, ["+8613912345678|U|收到，谢谢|s1|0"], "{inbound:?}");
    wait("the call in smsserver_calls", &|| {
        db.sql("SELECT COUNT(*) FROM smsserver_calls") == ["1"]
    });
    let calls = db.sql("SELECT gateway_id, caller_id FROM smsserver_calls");
    assert_eq!(calls, ["s1|+8613700000000"]);
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM smsserver_out WHERE status = 'Q'"),
        ["600"],
        "rows smsgw never queued are left as they are"
    );
    // The reader processes and deletes what it read; after a restart none of
    // it comes back, and what is new still arrives.
    db.sql("DELETE FROM smsserver_in");
    db.sql("DELETE FROM smsserver_calls");
    for c in daemon.0.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    daemon.0.clear();
    daemon.0.push(super::restart::daemon(&cfg, &log, &[]));
    writeln!(
        sims.0[0].stdin.as_mut().unwrap(),
        "incoming +8613912345678 好的"
    )
    .unwrap();
    wait("the next message in smsserver_in", &|| {
        db.sql("SELECT COUNT(*) FROM smsserver_in") != ["0"]
    });
    std::thread::sleep(Duration::from_millis(600));
    let after = db.sql("SELECT type, text FROM smsserver_in ORDER BY id");
    assert_eq!(after, ["I|好的"], "deleted rows came back: {after:?}");
    assert_eq!(db.sql("SELECT COUNT(*) FROM smsserver_calls"), ["0"]);
    drop(daemon);
    drop_all(backend, drops).await;
}

/// Killed after queueing a row but before its `status` became `Q`, then
/// restarted: every row is sent once and ends `S`.
async fn a_kill_between_queue_and_status_repeats_nothing(backend: &'static str) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let Some(Site {
        url,
        store,
        db,
        now,
        drops,
    }) = site(backend, d).await
    else {
        return;
    };
    for i in 0..3 {
        db.sql(&format!(
            "INSERT INTO smsserver_out (recipient, text, create_date) VALUES ('1390000000{i}', '提醒 {i}', {now})"
        ));
    }
    let _sims = Reap(vec![sim(d, "s1", &[])]);
    let cfg = config(d, &url);
    let log = d.join("smsgw.log");
    let mut c = super::restart::daemon(
        &cfg,
        &log,
        &[("SMSGW_FAILPOINT", "smsserver_after_enqueue:2")],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the failpoint was never reached");
        std::thread::sleep(Duration::from_millis(100));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
    let _daemon = Reap(vec![super::restart::daemon(&cfg, &log, &[])]);
    // A kill while a part was on the wire leaves that message ambiguous: never
    // resent on its own, its row stays Q until an operator decides.
    let ambiguous = || async {
        store
            .counts()
            .await
            .unwrap()
            .iter()
            .filter(|(st, _, _)| st == "ambiguous")
            .map(|(_, _, n)| *n)
            .sum::<i64>()
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let sent: i64 = db.sql("SELECT COUNT(*) FROM smsserver_out WHERE status = 'S'")[0]
            .parse()
            .unwrap();
        if sent + ambiguous().await == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{:?}\n{}",
            db.sql("SELECT id, status FROM smsserver_out"),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let recs = records(d);
    for i in 0..3 {
        let n = format!("1390000000{i}");
        let sends = recs.iter().filter(|r| r.to.ends_with(&n)).count();
        let row = store.find_recipient(&n).await.unwrap();
        assert_eq!(row.len(), 1, "one smsgw row for {n}: {row:?}");
        if row[0].state.as_str() == "ambiguous" {
            assert!(sends <= 1, "{n}: {recs:?}");
        } else {
            assert_eq!(sends, 1, "{n}: {recs:?}");
        }
    }
    drop(_daemon);
    drop_all(backend, drops).await;
}

#[tokio::test]
async fn smsserver_sqlite_a_kill_between_queue_and_status_repeats_nothing() {
    a_kill_between_queue_and_status_repeats_nothing("sqlite").await
}
#[tokio::test]
async fn smsserver_postgres_a_kill_between_queue_and_status_repeats_nothing() {
    a_kill_between_queue_and_status_repeats_nothing("postgres").await
}
#[tokio::test]
async fn smsserver_mysql_a_kill_between_queue_and_status_repeats_nothing() {
    a_kill_between_queue_and_status_repeats_nothing("mysql").await
}

#[tokio::test]
async fn smsserver_sqlite_sent_received_reported_and_called() {
    sent_received_reported_and_called("sqlite").await
}
#[tokio::test]
async fn smsserver_postgres_sent_received_reported_and_called() {
    sent_received_reported_and_called("postgres").await
}
#[tokio::test]
async fn smsserver_mysql_sent_received_reported_and_called() {
    sent_received_reported_and_called("mysql").await
}
