//! The daemon end to end: store + simulated modems on real ptys + dispatcher.
//! Checked against the simulators' record of what reached the network.

use chrono::Utc;
use smsgw::config::{Config, Modem};
use smsgw::daemon::Daemon;
use smsgw::store::{NewMessage, Store};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

fn modem(id: &str, device: &str) -> Modem {
    Modem::new(id, device)
}

fn config(url: &str, modems: Vec<Modem>) -> Config {
    let mut c = Config::default();
    c.database.url = url.into();
    c.modems = modems;
    c.quiet_hours.windows.clear();
    c.sending.poll_secs = 1;
    c.status.socket = String::new();
    c.validate().unwrap();
    c
}

fn owner(tag: &str) -> String {
    format!(
        "test-{tag}-{}-{}",
        std::process::id(),
        Utc::now().timestamp_micros() % 1_000_000
    )
}

/// Waits until no row is queued, sending or retrying, and every sent row's
/// delivery is final; returns rows per (state, delivery).
async fn settle(store: &Store, within: Duration) -> HashMap<(String, String), i64> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let counts = store.counts().await.unwrap();
        let busy: i64 = counts
            .iter()
            .filter(|(st, _, _)| matches!(st.as_str(), "queued" | "sending" | "retrying"))
            .map(|c| c.2)
            .sum();
        let mut by = HashMap::new();
        let mut pending = 0;
        for (st, _, n) in &counts {
            *by.entry((st.clone(), String::new())).or_insert(0) += n;
        }
        if busy == 0 {
            let sent = by
                .get(&("sent".into(), String::new()))
                .copied()
                .unwrap_or(0);
            let mut delivered = 0;
            for id in 1..=400i64 {
                if let Some(r) = store.get(id).await.unwrap() {
                    if r.state == "sent" && r.delivery == "delivered" {
                        delivered += 1;
                    }
                    if r.state == "sent" && r.delivery == "pending" {
                        pending += 1;
                    }
                }
            }
            if pending == 0 || tokio::time::Instant::now() > deadline {
                by.insert(("sent".into(), "delivered".into()), delivered);
                by.insert(("sent".into(), "total".into()), sent);
                return by;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not settled: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const GREETING: &str = "尊敬的客户：中秋佳节将至，祝您和家人身体健康、阖家幸福、万事如意！本店全场八折，欢迎光临。详询请回复本短信，退订回T。";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_on_sqlite_with_reports_and_an_opt_out() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/smsgw.db", dir.path().display());
    let cfg = config(
        &url,
        vec![
            modem("m1", "sim:generic:10-40"),
            modem("m2", "sim:huawei:10-40"),
            modem("m3", "sim:zte:10-40"),
        ],
    );
    let d = Daemon::start(cfg, Some(owner("sqlite"))).await.unwrap();
    let mut expected_parts = 0;
    for i in 0..24 {
        let (cat, body) = if i % 3 == 0 {
            (
                "reminder",
                format!("提醒：您预约的门诊是明天上午 9:{i:02}，请提前15分钟到达。"),
            )
        } else {
            (
                "greeting",
                format!("{GREETING}{}", "另：会员积分可抵现金。".repeat(i % 2 + 1)),
            )
        };
        expected_parts += smsgw::pdu::plan(&body, smsgw::pdu::Encoding::Auto, false, 10)
            .unwrap()
            .parts
            .len();
        d.store
            .enqueue(&NewMessage {
                category: Some(cat.into()),
                priority: if cat == "reminder" { 10 } else { 0 },
                ..NewMessage::new(&format!("+86139{i:08}"), &body)
            })
            .await
            .unwrap();
    }
    let by = settle(&d.store, Duration::from_secs(60)).await;
    assert_eq!(by[&("sent".into(), "total".into())], 24, "{by:?}");
    assert_eq!(
        by[&("sent".into(), "delivered".into())],
        24,
        "delivery reports written back: {by:?}"
    );
    // The network saw every part exactly once, spread over the three modems.
    let mut seen = HashSet::new();
    let mut per_modem = HashMap::new();
    for (id, sim) in &d.sims {
        for s in sim.submitted() {
            assert!(
                seen.insert((s.to.clone(), s.part, s.text.clone())),
                "sent twice: {s:?}"
            );
            *per_modem.entry(id.clone()).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), expected_parts);
    assert_eq!(
        per_modem.len(),
        3,
        "least-loaded routing used every modem: {per_modem:?}"
    );
    // A customer replies 退订: opted out; a greeting to them is suppressed, a reminder goes.
    d.sims["m2"].incoming("+8613900000001", "退订");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !d.store.is_opted_out("13900000001").await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "opt-out not recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let g = d
        .store
        .enqueue(&NewMessage {
            category: Some("greeting".into()),
            ..NewMessage::new("13900000001", "国庆快乐！")
        })
        .await
        .unwrap()
        .id;
    let r = d
        .store
        .enqueue(&NewMessage {
            category: Some("reminder".into()),
            ..NewMessage::new("13900000001", "您的快递已到驿站。")
        })
        .await
        .unwrap()
        .id;
    settle(&d.store, Duration::from_secs(30)).await;
    assert_eq!(d.store.get(g).await.unwrap().unwrap().state, "suppressed");
    assert_eq!(d.store.get(r).await.unwrap().unwrap().state, "sent");
    d.shutdown().await;
}

/// Two daemons (two branch servers, each with its own modems) share one outbox.
async fn two_instances_share_one_outbox(admin_url: &str, create: &str) {
    let admin = match Store::connect(admin_url).await {
        Ok(a) => a,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "database unreachable with CI=true: {e}"
            );
            eprintln!("SKIPPED: {e}");
            return;
        }
    };
    let db = format!(
        "smsgw_two_{}_{}",
        std::process::id(),
        Utc::now().timestamp_micros() % 1_000_000
    );
    admin.execute_raw(&format!("{create} {db}")).await.unwrap();
    let url = format!("{}/{db}", admin_url.rsplit_once('/').unwrap().0);
    let a = Daemon::start(
        config(
            &url,
            vec![
                modem("a1", "sim:generic:5-20"),
                modem("a2", "sim:quectel:5-20"),
            ],
        ),
        Some(owner("a")),
    )
    .await
    .unwrap();
    let b = Daemon::start(
        config(
            &url,
            vec![modem("b1", "sim:simcom:5-20"), modem("b2", "sim:zte:5-20")],
        ),
        Some(owner("b")),
    )
    .await
    .unwrap();
    let mut expected_parts = 0;
    for i in 0..80 {
        let body = if i % 4 == 0 {
            format!("{GREETING}{GREETING}")
        } else {
            format!("提醒 {i}")
        };
        expected_parts += smsgw::pdu::plan(&body, smsgw::pdu::Encoding::Auto, false, 10)
            .unwrap()
            .parts
            .len();
        a.store
            .enqueue(&NewMessage::new(&format!("+86137{i:08}"), &body))
            .await
            .unwrap();
    }
    let by = settle(&a.store, Duration::from_secs(90)).await;
    assert_eq!(by[&("sent".into(), "total".into())], 80, "{by:?}");
    let mut seen = HashSet::new();
    let mut by_instance = [0, 0];
    for (i, d) in [&a, &b].iter().enumerate() {
        for sim in d.sims.values() {
            for s in sim.submitted() {
                assert!(
                    seen.insert((s.to.clone(), s.part)),
                    "sent twice across instances: {s:?}"
                );
                by_instance[i] += 1;
            }
        }
    }
    assert_eq!(
        seen.len(),
        expected_parts,
        "every part of the 80 messages once"
    );
    assert!(expected_parts > 80, "some messages are multipart");
    assert!(
        by_instance[0] > 0 && by_instance[1] > 0,
        "both instances sent: {by_instance:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
    let force = if admin_url.starts_with("postgres") {
        " WITH (FORCE)"
    } else {
        ""
    };
    admin
        .execute_raw(&format!("DROP DATABASE IF EXISTS {db}{force}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_postgres_outbox() {
    let url = std::env::var("SMSGW_TEST_PG_URL")
        .unwrap_or("postgres://postgres@127.0.0.1:5432/test".into());
    two_instances_share_one_outbox(&url, "CREATE DATABASE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_mariadb_outbox() {
    let url =
        std::env::var("SMSGW_TEST_MYSQL_URL").unwrap_or("mysql://root@127.0.0.1:3306/test".into());
    two_instances_share_one_outbox(&url, "CREATE DATABASE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_overtakes_a_running_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/smsgw.db", dir.path().display());
    let d = Daemon::start(
        config(&url, vec![modem("m1", "sim:generic:30-50")]),
        Some(owner("prio")),
    )
    .await
    .unwrap();
    for i in 0..200 {
        d.store
            .enqueue(&NewMessage {
                category: Some("greeting".into()),
                ..NewMessage::new(&format!("+86136{i:08}"), "中秋快乐！")
            })
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let reminder = d
        .store
        .enqueue(&NewMessage {
            // Same priority as the campaign: the category alone puts it first
            // ([sending] urgent_categories = ["reminder"], the default).
            category: Some("reminder".into()),
            priority: 0,
            ..NewMessage::new("13900000002", "您好，请 A023 号到 3 号窗口。")
        })
        .await
        .unwrap()
        .id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while d.store.get(reminder).await.unwrap().unwrap().state != "sent" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reminder waited behind the campaign"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let queued: i64 = d
        .store
        .counts()
        .await
        .unwrap()
        .iter()
        .filter(|c| c.0 == "queued")
        .map(|c| c.2)
        .sum();
    assert!(
        queued > 100,
        "the reminder went first, with {queued} greetings still queued"
    );
    d.shutdown().await;
}

/// SIGHUP's modem list: a new `[[modem]]` starts and takes work; a removed one
/// takes no more work, closes, and its messages go through the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_modems() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("STATE_DIRECTORY", dir.path());
    let url = format!("sqlite://{}/r.db", dir.path().display());
    let one = config(&url, vec![modem("m1", "sim:generic:5-20")]);
    let mut d = Daemon::start(one.clone(), Some(owner("reload")))
        .await
        .unwrap();
    assert!(d.initialised(Duration::from_secs(30)).await);
    assert_eq!(d.modems().len(), 1);

    // Add m2 (and keep m1), with a new daily quota.
    let mut two = config(
        &url,
        vec![
            modem("m1", "sim:generic:5-20"),
            modem("m2", "sim:huawei:5-20"),
        ],
    );
    two.limits.per_day = 777;
    d.reload(two).await;
    // The kept modem's new quota shows at once (`smsgw modems`), before any send.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while d.steer.usage("m1").per_day != 777 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "m1 still shows quota {}",
            d.steer.usage("m1").per_day
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids: Vec<String> = d.modems().iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, ["m1", "m2"]);
    assert!(
        d.initialised(Duration::from_secs(30)).await,
        "m2 initialises"
    );
    d.steer.pause(Some("m1"));
    let store = d.store.clone();
    let id = store
        .enqueue(&NewMessage::new("+8613800138100", "新增的猫发送"))
        .await
        .unwrap()
        .id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while store.get(id).await.unwrap().unwrap().state != "sent" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not sent by the added modem"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        store.get(id).await.unwrap().unwrap().modem.as_deref(),
        Some("m2")
    );
    d.steer.resume(None);

    // Remove m1: it closes; everything goes through m2.
    let m1 = d.modems()[0].clone();
    let only_m2 = config(&url, vec![modem("m2", "sim:huawei:5-20")]);
    d.reload(only_m2).await;
    assert_eq!(d.modems().len(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while m1.status().state != smsgw::modem::ModemState::Stopped {
        assert!(tokio::time::Instant::now() < deadline, "m1 did not close");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            store
                .enqueue(&NewMessage::new(
                    &format!("+86138001382{i:02}"),
                    "之后的消息",
                ))
                .await
                .unwrap()
                .id,
        );
    }
    let counts = settle(&store, Duration::from_secs(30)).await;
    assert_eq!(
        counts.get(&("sent".into(), "delivered".into())),
        Some(&7),
        "{counts:?}"
    );
    for id in ids {
        assert_eq!(
            store.get(id).await.unwrap().unwrap().modem.as_deref(),
            Some("m2")
        );
    }
    // A changed port setting is not applied under a running modem.
    let mut moved = config(&url, vec![modem("m2", "/dev/ttyUSB9")]);
    moved.limits.per_day = 500;
    d.reload(moved).await;
    assert_eq!(
        d.modems()[0].status().state,
        smsgw::modem::ModemState::Ready
    );
    d.shutdown().await;
}

/// Rate limits end to end, against the simulator's record, on each backend: a
/// modem's daily quota, the per-recipient daily limit (all categories) and a
/// per-category one are never exceeded, a customer is one customer in any number
/// form, and a restart does not reset the counts (they come from the database).
async fn daily_limits_on(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("STATE_DIRECTORY", dir.path());
    let Some((url, drop_db)) = crate::daemon_faults::database(backend, dir.path()).await else {
        return;
    };
    let mut cfg = config(&url, vec![modem("m1", "sim:generic:5-20")]);
    cfg.limits.per_day = 4;
    cfg.limits.per_recipient_per_day = 2;
    cfg.recipient_limits.insert("greeting".into(), 1);
    let d = Daemon::start(cfg.clone(), Some(owner("limits")))
        .await
        .unwrap();
    let store = d.store.clone();
    let msg = |to: &str, category: &str| NewMessage {
        category: Some(category.into()),
        ..NewMessage::new(to, "会员日提醒")
    };
    // Customer A (three number forms), then B, C, D.
    let mut ids = Vec::new();
    for (to, cat) in [
        ("+8613800138301", "notice"),
        ("13800138301", "greeting"),
        ("8613800138301", "greeting"), // A's second greeting: held (greeting = 1)
        ("+8613800138302", "greeting"),
        ("13800138302", "greeting"), // B's second greeting: held by greeting = 1 alone
        ("+8613800138303", "notice"),
        ("+8613800138304", "notice"), // the modem's quota (4) is used by now
    ] {
        ids.push(store.enqueue(&msg(to, cat)).await.unwrap().id);
    }
    let sent_ids = |store: Store, ids: Vec<i64>| async move {
        let mut out = Vec::new();
        for id in ids {
            if store.get(id).await.unwrap().unwrap().state == "sent" {
                out.push(id);
            }
        }
        out
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sent_ids(store.clone(), ids.clone()).await.len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "quota never reached"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give the dispatcher time to (wrongly) send more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let record = d.sims["m1"].submitted();
    d.shutdown().await;
    assert_eq!(record.len(), 4, "the daily quota of 4 parts: {record:?}");
    assert_eq!(
        sent_ids(store.clone(), ids.clone()).await,
        [ids[0], ids[1], ids[3], ids[5]],
        "A's notice and first greeting, B's first greeting, C's notice"
    );
    // One customer whatever the number's form: the last 11 digits.
    let customer = |to: &str| to[to.len() - 11..].to_string();
    let a: Vec<_> = record
        .iter()
        .filter(|r| customer(&r.to) == "13800138301")
        .collect();
    assert_eq!(a.len(), 2, "per_recipient_per_day = 2: {record:?}");

    // A restart: the day's counts come back from the database.
    let d = Daemon::start(cfg, Some(owner("limits2"))).await.unwrap();
    assert!(d.initialised(Duration::from_secs(30)).await);
    for to in ["+8613800138306", "+8613800138307"] {
        d.store.enqueue(&msg(to, "notice")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = d.sims["m1"].submitted();
    let store = d.store.clone();
    d.shutdown().await;
    assert!(
        after.is_empty(),
        "sent after a restart despite the quota: {after:?}"
    );
    // The others wait for tomorrow, not failed.
    let waiting: i64 = store
        .counts()
        .await
        .unwrap()
        .iter()
        .filter(|(s, _, _)| s == "queued" || s == "retrying")
        .map(|(_, _, n)| n)
        .sum();
    assert_eq!(
        waiting, 5,
        "A's and B's second greetings, D, and the two new ones"
    );
    drop(store);
    if let Some((admin, sql)) = drop_db {
        admin.execute_raw(&sql).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_limits_hold_across_a_restart_sqlite() {
    daily_limits_on("sqlite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_limits_hold_across_a_restart_postgres() {
    daily_limits_on("postgres").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_limits_hold_across_a_restart_mariadb() {
    daily_limits_on("mariadb").await
}

/// Limits that span modems, end to end on each backend: four modems sending at
/// once never exceed `global_per_minute`, and a customer's second message, routed
/// to another modem while the first is still on the wire, waits for tomorrow
/// (`per_recipient_per_day`). With one modem both hold by accident (one send at a
/// time); this test is what fails when parts are counted only after a send ends.
async fn limits_across_modems_on(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("STATE_DIRECTORY", dir.path());
    let Some((url, drop_db)) = crate::daemon_faults::database(backend, dir.path()).await else {
        return;
    };
    let modems = (1..=4)
        .map(|i| modem(&format!("m{i}"), "sim:generic:400-600"))
        .collect();
    let mut cfg = config(&url, modems);
    cfg.limits.global_per_minute = 3;
    cfg.limits.per_recipient_per_day = 1;
    let d = Daemon::start(cfg, Some(owner("spanning"))).await.unwrap();
    assert!(d.initialised(Duration::from_secs(30)).await);
    let store = d.store.clone();
    // Customer A three times (three number forms), then five other customers, in
    // one statement as a campaign import would: one claim takes four rows.
    let values: Vec<String> = [
        "+8613800138401",
        "13800138401",
        "8613800138401",
        "+8613800138402",
        "+8613800138403",
        "+8613800138404",
        "+8613800138405",
        "+8613800138406",
    ]
    .iter()
    .map(|to| format!("('{to}', '会员日提醒：本周六全场八折。', 'notice')"))
    .collect();
    store
        .execute_raw(&format!(
            "INSERT INTO outbox (recipient, body, category) VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while d.sims.values().map(|s| s.submitted().len()).sum::<usize>() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first minute's three parts never went"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give the dispatcher time to (wrongly) send more within the minute.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let record: Vec<_> = d.sims.values().flat_map(|s| s.submitted()).collect();
    let busy_modems = d
        .sims
        .values()
        .filter(|s| !s.submitted().is_empty())
        .count();
    d.shutdown().await;
    assert_eq!(record.len(), 3, "global_per_minute = 3: {record:?}");
    assert!(
        busy_modems >= 2,
        "sent on several modems at once: {record:?}"
    );
    let to_a = record
        .iter()
        .filter(|r| r.to.ends_with("13800138401"))
        .count();
    assert_eq!(
        to_a, 1,
        "per_recipient_per_day = 1 across modems: {record:?}"
    );
    // Nothing was failed for it: the rest waits (A's two for tomorrow).
    let counts = store.counts().await.unwrap();
    let waiting: i64 = counts
        .iter()
        .filter(|(s, _, _)| s == "queued" || s == "retrying")
        .map(|(_, _, n)| n)
        .sum();
    assert_eq!(waiting, 5, "{counts:?}");
    drop(store);
    if let Some((admin, sql)) = drop_db {
        admin.execute_raw(&sql).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_across_modems_sqlite() {
    limits_across_modems_on("sqlite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_across_modems_postgres() {
    limits_across_modems_on("postgres").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_across_modems_mariadb() {
    limits_across_modems_on("mariadb").await
}

/// A modem that answers a part only after the send timeout: the message is held
/// as ambiguous, then the late `+CMGS` shows it was sent: the row becomes `sent`
/// with the late message reference, and its delivery report matches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_acknowledgement_resolves_an_ambiguous_message() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("STATE_DIRECTORY", dir.path());
    let url = format!("sqlite://{}/late.db", dir.path().display());
    let mut slow = modem("m1", "sim:generic:2500-2500");
    slow.send_timeout_secs = Some(1);
    let d = Daemon::start(config(&url, vec![slow]), Some(owner("late")))
        .await
        .unwrap();
    let store = d.store.clone();
    let id = store
        .enqueue(&NewMessage::new("+8613800138555", "您的快递已到驿站"))
        .await
        .unwrap()
        .id;
    let mut seen_ambiguous = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let row = loop {
        let row = store.get(id).await.unwrap().unwrap();
        seen_ambiguous |= row.state == "ambiguous";
        if row.state == "sent" && row.delivery == "delivered" {
            break row;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not resolved: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(seen_ambiguous, "held as ambiguous first");
    assert_eq!(row.modem.as_deref(), Some("m1"));
    assert_eq!(row.last_error, None);
    let parts = store.parts(id).await.unwrap();
    let record = d.sims["m1"].submitted();
    d.shutdown().await;
    assert_eq!(record.len(), 1, "sent once, never again: {record:?}");
    assert_eq!(parts.len(), 1);
    assert_eq!(
        parts[0].mr,
        Some(record[0].mr),
        "the late reference recorded"
    );
}

/// A long reply whose middle part the network lost, end to end: the two parts that
/// came wait in the database (across a restart) and stay out of the inbox while
/// the third may still come; once the newest is `[inbox] incomplete_after_minutes`
/// old, the message is in the inbox with the missing part marked, not never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_message_missing_a_part_still_reaches_the_inbox() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("STATE_DIRECTORY", dir.path());
    let url = format!("sqlite://{}/smsgw.db", dir.path().display());
    let cfg = config(&url, vec![modem("m1", "sim:generic:5-20")]);
    let d = Daemon::start(cfg.clone(), Some(owner("incomplete")))
        .await
        .unwrap();
    assert!(d.initialised(Duration::from_secs(30)).await);
    // Three UCS2 parts of 67, 67 and 10 characters; the second is lost.
    let text = format!("{}{}{}", "一".repeat(67), "二".repeat(67), "三".repeat(10));
    d.sims["m1"].control(smsgw::sim::Control::IncomingLosing {
        from: "+8613900000002".into(),
        text,
        lost: vec![2],
    });
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while count("SELECT COUNT(*) FROM inbox_fragments").await < 2 {
        assert!(tokio::time::Instant::now() < deadline, "parts never stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        count("SELECT COUNT(*) FROM inbox").await,
        0,
        "waits for part 2"
    );
    d.shutdown().await;
    // An hour passes without part 2; then the daemon starts again.
    sqlx::query(
        "UPDATE inbox_fragments SET created_at = strftime('%Y-%m-%d %H:%M:%f', 'now', '-61 minutes')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let d = Daemon::start(cfg, Some(owner("incomplete2")))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while count("SELECT COUNT(*) FROM inbox").await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the incomplete message never reached the inbox"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.shutdown().await;
    let (sender, body, parts, missing): (String, String, i64, i64) =
        sqlx::query_as("SELECT sender, body, parts, missing_parts FROM inbox")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(sender.ends_with("13900000002"), "{sender}");
    assert_eq!(body, format!("{}[…]{}", "一".repeat(67), "三".repeat(10)));
    assert_eq!((parts, missing), (3, 1));
    assert_eq!(count("SELECT COUNT(*) FROM inbox_fragments").await, 0);
}
