//! The store's conformance suite: every test runs against SQLite, PostgreSQL and
//! MariaDB over real connections, each on a fresh database (which also runs the
//! migrations from scratch). Servers: SMSGW_TEST_PG_URL (default
//! postgres://postgres@127.0.0.1:5432/test) and SMSGW_TEST_MYSQL_URL (default
//! mysql://root@127.0.0.1:3306/test). With CI=true an unreachable server fails.

use chrono::{Duration as CDuration, Utc};
use smsgw::store::contract::{self, Verdict};
use smsgw::store::{
    Completion, Delivery, Fragment, InboxMessage, NewMessage, OperatorAction, PartRecord, Store,
};
use std::collections::HashSet;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

/// A fresh database; dropped (server databases) when the test ends.
struct Fresh {
    store: Store,
    /// The server database's name (PostgreSQL and MariaDB).
    db: Option<String>,
    _dir: Option<tempfile::TempDir>,
    drop_sql: Option<(String, String)>,
}

impl Drop for Fresh {
    fn drop(&mut self) {
        if let Some((admin_url, sql)) = self.drop_sql.take() {
            // Best effort, on a separate runtime: the test's runtime is shutting down.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(s) = Store::connect(&admin_url).await {
                        let _ = s.execute_raw(&sql).await;
                    }
                });
            })
            .join();
        }
    }
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        Utc::now().timestamp_micros() % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn unreachable(what: &str, e: impl std::fmt::Display) -> Option<Fresh> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} is unreachable and CI=true: {e}");
    }
    eprintln!("SKIPPED: {what} unreachable: {e}");
    None
}

async fn fresh(b: Backend) -> Option<Fresh> {
    let (store, dir, drop_sql, db) = match b {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/smsgw.db", dir.path().display());
            (Store::connect(&url).await.unwrap(), Some(dir), None, None)
        }
        Backend::Postgres => {
            let admin = std::env::var("SMSGW_TEST_PG_URL")
                .unwrap_or("postgres://postgres@127.0.0.1:5432/test".into());
            let a = match Store::connect(&admin).await {
                Ok(a) => a,
                Err(e) => return unreachable("PostgreSQL", e),
            };
            let db = unique("smsgw_t");
            a.execute_raw(&format!("CREATE DATABASE {db}"))
                .await
                .unwrap();
            let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
            let s = Store::connect(&url).await.unwrap();
            let drop = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
            (s, None, Some((admin, drop)), Some(db))
        }
        Backend::Mysql => {
            let admin = std::env::var("SMSGW_TEST_MYSQL_URL")
                .unwrap_or("mysql://root@127.0.0.1:3306/test".into());
            let a = match Store::connect(&admin).await {
                Ok(a) => a,
                Err(e) => return unreachable("MariaDB/MySQL", e),
            };
            let db = unique("smsgw_t");
            a.execute_raw(&format!("CREATE DATABASE {db} CHARACTER SET utf8mb4"))
                .await
                .unwrap();
            let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
            let s = Store::connect(&url).await.unwrap();
            let drop = format!("DROP DATABASE IF EXISTS {db}");
            (s, None, Some((admin, drop)), Some(db))
        }
    };
    store.migrate().await.unwrap();
    Some(Fresh {
        store,
        db,
        _dir: dir,
        drop_sql,
    })
}

const LEASE: Duration = Duration::from_secs(300);

fn msg(to: &str, body: &str) -> NewMessage {
    NewMessage::new(to, body)
}

async fn migrations_are_idempotent(s: &Store) {
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    s.ping().await.unwrap();
}

async fn claim_order_priority_then_due_then_id(s: &Store) {
    let now = Utc::now();
    let low = s.enqueue(&msg("10086", "greeting 1")).await.unwrap().id;
    let low2 = s.enqueue(&msg("10086", "greeting 2")).await.unwrap().id;
    let high = s
        .enqueue(&NewMessage {
            priority: 10,
            ..msg("10086", "reminder")
        })
        .await
        .unwrap()
        .id;
    let later = s
        .enqueue(&NewMessage {
            priority: 99,
            send_at: Some(now + CDuration::hours(1)),
            ..msg("10086", "tomorrow")
        })
        .await
        .unwrap()
        .id;
    let claimed = s
        .claim("a", 10, LEASE, now + CDuration::seconds(1))
        .await
        .unwrap();
    let ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        [high, low, low2],
        "priority first, then due time, then id; future rows wait"
    );
    assert!(s
        .claim("b", 10, LEASE, now + CDuration::seconds(1))
        .await
        .unwrap()
        .is_empty());
    let row = s.get(high).await.unwrap().unwrap();
    assert_eq!(
        (row.state.as_str(), row.lease_owner.as_deref()),
        ("sending", Some("a"))
    );
    // The scheduled row becomes due.
    let c = s
        .claim("b", 10, LEASE, now + CDuration::hours(2))
        .await
        .unwrap();
    assert_eq!(c.iter().map(|c| c.id).collect::<Vec<_>>(), [later]);
}

async fn chinese_and_emoji_survive(s: &Store) {
    let body = "尊敬的客户：中秋快乐🥮，阖家幸福！𠀀";
    s.enqueue(&msg("+8613800138000", body)).await.unwrap();
    let c = s
        .claim("a", 1, LEASE, Utc::now() + CDuration::seconds(1))
        .await
        .unwrap();
    assert_eq!(c[0].body.as_deref(), Some(body));
}

async fn dedupe_key_queues_once(s: &Store) {
    let m = NewMessage {
        dedupe_key: Some("appointment-4711-reminder".into()),
        ..msg("10086", "x")
    };
    let a = s.enqueue(&m).await.unwrap();
    let b = s.enqueue(&m).await.unwrap();
    assert!(!a.duplicate && b.duplicate);
    assert_eq!(a.id, b.id);
    let n: i64 = s.counts().await.unwrap().iter().map(|c| c.2).sum();
    assert_eq!(n, 1);
}

async fn completion_is_guarded_by_the_lease(s: &Store) {
    let id = s.enqueue(&msg("10086", "x")).await.unwrap().id;
    // After the insert: the database stamps due_at with its own clock.
    let now = Utc::now() + CDuration::seconds(1);
    s.claim("a", 1, Duration::from_secs(10), now).await.unwrap();
    // a stalls; its lease expires; the rescuer returns the row; b claims it.
    let r = s
        .rescue_expired(now + CDuration::seconds(11))
        .await
        .unwrap();
    assert_eq!((r.retrying, r.ambiguous), (1, 0));
    let c = s
        .claim("b", 1, LEASE, now + CDuration::seconds(12))
        .await
        .unwrap();
    assert_eq!(c[0].id, id);
    let sent = Completion::Sent {
        modem: "m1".into(),
        parts_total: 1,
        report_requested: true,
    };
    assert!(
        !s.complete("a", id, &sent, now).await.unwrap(),
        "a late worker must not overwrite"
    );
    assert_eq!(
        s.get(id).await.unwrap().unwrap().lease_owner.as_deref(),
        Some("b")
    );
    assert!(s.complete("b", id, &sent, now).await.unwrap());
    let row = s.get(id).await.unwrap().unwrap();
    assert_eq!(
        (row.state.as_str(), row.delivery.as_str()),
        ("sent", "pending")
    );
    assert_eq!((row.modem.as_deref(), row.attempts), (Some("m1"), 1));
    assert!(row.sent_at.is_some());
    assert!(
        !s.complete("b", id, &sent, now).await.unwrap(),
        "completed rows are not held"
    );
}

async fn rescue_holds_rows_with_a_part_on_the_wire(s: &Store) {
    let id = s.enqueue(&msg("10086", "x")).await.unwrap().id;
    // After the insert: the database stamps due_at with its own clock.
    let now = Utc::now() + CDuration::seconds(1);
    let c = s.claim("a", 1, Duration::from_secs(10), now).await.unwrap();
    assert!(s
        .set_inflight("a", id, Some(2), c[0].lease_until)
        .await
        .unwrap());
    assert!(!s
        .set_inflight("zz", id, Some(2), c[0].lease_until)
        .await
        .unwrap());
    let r = s
        .rescue_expired(now + CDuration::seconds(11))
        .await
        .unwrap();
    assert_eq!((r.retrying, r.ambiguous), (0, 1));
    let row = s.get(id).await.unwrap().unwrap();
    assert_eq!(row.state, "ambiguous");
    assert!(row.last_error.unwrap().contains("part 2"));
    assert!(s
        .claim("b", 1, LEASE, now + CDuration::seconds(20))
        .await
        .unwrap()
        .is_empty());
}

/// A row whose holder died before any part was on the wire goes back to the
/// queue in its old place: after a restart it is sent next, not after every
/// row queued behind it (a campaign of thousands).
async fn requeued_rows_keep_their_place(s: &Store) {
    let first = s.enqueue(&msg("10086", "first in line")).await.unwrap().id;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let later: Vec<i64> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(
                s.enqueue(&msg("10086", &format!("later {i}")))
                    .await
                    .unwrap()
                    .id,
            );
        }
        v
    };
    let now = Utc::now() + CDuration::seconds(1);
    let c = s
        .claim("dead", 1, Duration::from_secs(10), now)
        .await
        .unwrap();
    assert_eq!(c[0].id, first);
    let r = s
        .settle_predecessor("dead", now + CDuration::seconds(30))
        .await
        .unwrap();
    assert_eq!(r.retrying, 1);
    let next = s
        .claim("alive", 1, LEASE, now + CDuration::seconds(31))
        .await
        .unwrap();
    assert_eq!(next[0].id, first, "requeued behind {later:?}");
    // The same when the lease expired instead (another instance died).
    let c = s
        .claim(
            "dead2",
            1,
            Duration::from_secs(10),
            now + CDuration::seconds(40),
        )
        .await
        .unwrap();
    let r = s
        .rescue_expired(now + CDuration::seconds(60))
        .await
        .unwrap();
    assert_eq!(r.retrying, 1);
    let next = s
        .claim("alive", 1, LEASE, now + CDuration::seconds(61))
        .await
        .unwrap();
    assert_eq!(next[0].id, c[0].id, "requeued behind the rest");
    // And an ambiguous row released for its remaining parts (by an operator,
    // or by the modem's late answer).
    let c = s
        .claim(
            "dead3",
            1,
            Duration::from_secs(10),
            now + CDuration::seconds(70),
        )
        .await
        .unwrap();
    assert!(s
        .set_inflight("dead3", c[0].id, Some(1), c[0].lease_until)
        .await
        .unwrap());
    let r = s
        .rescue_expired(now + CDuration::seconds(90))
        .await
        .unwrap();
    assert_eq!(r.ambiguous, 1);
    assert!(s
        .operate(
            c[0].id,
            OperatorAction::ReleaseResend,
            now + CDuration::seconds(91)
        )
        .await
        .unwrap());
    let next = s
        .claim("alive", 1, LEASE, now + CDuration::seconds(92))
        .await
        .unwrap();
    assert_eq!(next[0].id, c[0].id, "released behind the rest");
}

async fn acknowledged_parts_are_recorded_once_and_never_forgotten(s: &Store) {
    let id = s.enqueue(&msg("10086", "x")).await.unwrap().id;
    // After the insert: the database stamps due_at with its own clock.
    let now = Utc::now() + CDuration::seconds(1);
    s.claim("a", 1, Duration::from_secs(10), now).await.unwrap();
    let part = PartRecord {
        seq: 1,
        total: 2,
        modem: "m1".into(),
        recipient: "10086".into(),
        mr: Some(255),
        submitted_at: now,
        status: Delivery::Pending,
    };
    s.record_part(id, &part).await.unwrap();
    s.record_part(id, &part).await.unwrap();
    // a vanishes between the parts: rescued (nothing in flight) and reclaimed.
    s.rescue_expired(now + CDuration::seconds(11))
        .await
        .unwrap();
    let c = s
        .claim("b", 1, LEASE, now + CDuration::seconds(12))
        .await
        .unwrap();
    assert_eq!(c[0].parts_done, [1], "part 1 must not be sent again");
    let parts = s.parts(id).await.unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(
        (parts[0].mr, parts[0].status),
        (Some(255), Delivery::Pending)
    );
    assert!(
        (parts[0].submitted_at - now).num_milliseconds().abs() < 2,
        "times survive to the millisecond"
    );
}

async fn retries_wait_for_their_due_time(s: &Store) {
    let id = s.enqueue(&msg("10086", "x")).await.unwrap().id;
    // After the insert: the database stamps due_at with its own clock.
    let now = Utc::now() + CDuration::seconds(1);
    s.claim("a", 1, LEASE, now).await.unwrap();
    let retry = Completion::Retry {
        error: "+CMS ERROR: 42 (congestion)".into(),
        due: now + CDuration::seconds(60),
        count_attempt: true,
    };
    assert!(s.complete("a", id, &retry, now).await.unwrap());
    let row = s.get(id).await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.attempts), ("retrying", 1));
    assert_eq!(
        row.last_error.as_deref(),
        Some("+CMS ERROR: 42 (congestion)")
    );
    assert!(s
        .claim("a", 1, LEASE, now + CDuration::seconds(59))
        .await
        .unwrap()
        .is_empty());
    let c = s
        .claim("a", 1, LEASE, now + CDuration::seconds(61))
        .await
        .unwrap();
    assert_eq!((c[0].id, c[0].attempts), (id, 1));
    // A modem problem sends it back without using an attempt.
    let modem_fault = Completion::Retry {
        error: "modem m1 is disconnected".into(),
        due: now,
        count_attempt: false,
    };
    assert!(s.complete("a", id, &modem_fault, now).await.unwrap());
    assert_eq!(s.get(id).await.unwrap().unwrap().attempts, 1);
}

async fn every_terminal_transition(s: &Store) {
    let now = Utc::now();
    let cases = [
        (
            Completion::Failed {
                error: "+CMS ERROR: 1".into(),
            },
            "failed",
            1,
        ),
        (
            Completion::Ambiguous {
                error: "timeout after Ctrl-Z".into(),
            },
            "ambiguous",
            1,
        ),
        (
            Completion::Rejected {
                error: "recipient is empty".into(),
            },
            "rejected",
            0,
        ),
        (Completion::Expired, "expired", 0),
        (
            Completion::Suppressed {
                reason: "recipient opted out".into(),
            },
            "suppressed",
            0,
        ),
        (
            Completion::Release {
                due: now + CDuration::hours(10),
            },
            "queued",
            0,
        ),
    ];
    for (c, state, attempts) in cases {
        let id = s.enqueue(&msg("10086", state)).await.unwrap().id;
        let got = s
            .claim("a", 1, LEASE, now + CDuration::seconds(1))
            .await
            .unwrap();
        assert_eq!(got[0].id, id);
        assert!(s.complete("a", id, &c, now).await.unwrap());
        let row = s.get(id).await.unwrap().unwrap();
        assert_eq!(
            (row.state.as_str(), row.attempts),
            (state, attempts),
            "{c:?}"
        );
        assert_eq!(row.lease_owner, None);
    }
    // The released row waits for its new due time.
    assert!(s
        .claim("a", 9, LEASE, now + CDuration::hours(9))
        .await
        .unwrap()
        .is_empty());
}

async fn schema_enforces_the_lifecycle(s: &Store) {
    assert!(s
        .execute_raw("INSERT INTO outbox (recipient, body, state) VALUES ('1', 'x', 'bogus')")
        .await
        .is_err());
    assert!(s
        .execute_raw("INSERT INTO outbox (recipient, body, delivery) VALUES ('1', 'x', 'maybe')")
        .await
        .is_err());
    // 'sending' without a lease holder is impossible.
    assert!(s
        .execute_raw("INSERT INTO outbox (recipient, body, state) VALUES ('1', 'x', 'sending')")
        .await
        .is_err());
    assert!(s.execute_raw("INSERT INTO outbox_parts (outbox_id, seq, total, modem, recipient, mr, submitted_at) VALUES (999999, 1, 1, 'm', '1', 1, '2026-01-01 00:00:00')").await.is_err());
}

async fn rows_from_other_systems_are_validated(s: &Store) {
    // What an integrator writes: only the required columns, and some bad rows.
    for sql in [
        "INSERT INTO outbox (recipient, body) VALUES ('+86 138-0013-8000', '您的验证码是 123456')",
        "INSERT INTO outbox (recipient, body) VALUES (NULL, 'no recipient')",
        "INSERT INTO outbox (recipient, body) VALUES ('not a number', 'x')",
        "INSERT INTO outbox (recipient, body) VALUES ('10086', '')",
    ] {
        assert_eq!(s.execute_raw(sql).await.unwrap(), 1, "{sql}");
    }
    let now = Utc::now() + CDuration::seconds(5);
    let claimed = s.claim("a", 10, LEASE, now).await.unwrap();
    assert_eq!(claimed.len(), 4);
    let mut states = Vec::new();
    for c in &claimed {
        let completion = match contract::check(c, 10, now) {
            Verdict::Send { recipient, .. } => {
                assert_eq!(recipient, "+8613800138000");
                Completion::Sent {
                    modem: "m1".into(),
                    parts_total: 1,
                    report_requested: c.request_report,
                }
            }
            Verdict::Reject(error) => Completion::Rejected { error },
            Verdict::Expire => Completion::Expired,
        };
        assert!(s.complete("a", c.id, &completion, now).await.unwrap());
        let row = s.get(c.id).await.unwrap().unwrap();
        states.push((row.state, row.last_error));
    }
    assert_eq!(states[0], (smsgw::store::State::Sent, None));
    assert!(states[1]
        .1
        .as_deref()
        .unwrap()
        .contains("recipient is missing"));
    assert!(states[2].1.as_deref().unwrap().contains("only digits"));
    assert!(states[3].1.as_deref().unwrap().contains("body is empty"));
    assert!(states[1..].iter().all(|(st, _)| st == "rejected"));
}

async fn opt_outs_and_inbox(s: &Store) {
    assert!(!s.is_opted_out("+8613900000000").await.unwrap());
    s.add_opt_out("+8613900000000", Some("退订"), "sms")
        .await
        .unwrap();
    s.add_opt_out("+8613900000000", Some("TD"), "sms")
        .await
        .unwrap();
    assert!(s.is_opted_out("+8613900000000").await.unwrap());
    assert!(
        s.is_opted_out("13900000000").await.unwrap(),
        "the national form is the same subscriber"
    );
    assert!(!s.is_opted_out("13900000001").await.unwrap());
    let m = InboxMessage {
        modem: "m1".into(),
        sender: "+8613900000000".into(),
        body: "退订".into(),
        parts: 1,
        missing_parts: 0,
        received_at: Utc::now(),
        opt_out: true,
    };
    assert!(s.insert_inbox(&m).await.unwrap());
    assert!(
        !s.insert_inbox(&m).await.unwrap(),
        "the same message read twice is stored once"
    );
}

/// Adds one part; when it completes its message (stored in the inbox in the same
/// transaction), the parts it was joined from, in order.
async fn add_fragment(s: &Store, f: &Fragment) -> Option<Vec<Fragment>> {
    let mut parts = None;
    let out = s
        .add_fragment(f, |all| {
            parts = Some(all.to_vec());
            smsgw::dispatch::inbound::joined(all, &[])
        })
        .await
        .unwrap();
    match out {
        smsgw::store::FragmentOutcome::Stored { .. } => parts,
        _ => None,
    }
}

async fn fragments_reassemble_across_restarts(s: &Store) {
    let f = |seq: i32, body: &str| Fragment {
        modem: "m1".into(),
        sender: "+8613912345678".into(),
        concat_ref: 42,
        total: 3,
        seq,
        body: body.into(),
        received_at: Utc::now(),
    };
    assert_eq!(add_fragment(s, &f(3, "三")).await, None);
    assert_eq!(add_fragment(s, &f(1, "一")).await, None);
    assert_eq!(
        add_fragment(s, &f(1, "一")).await,
        None,
        "a repeated part changes nothing"
    );
    let all = add_fragment(s, &f(2, "二")).await.expect("complete");
    let text: String = all.iter().map(|f| f.body.as_str()).collect();
    assert_eq!(text, "一二三");
    // Consumed: a later message with the same reference starts afresh.
    assert_eq!(add_fragment(s, &f(1, "new")).await, None);
}

/// A concatenated incoming message whose other parts never came: found once its
/// newest part is older than the cut-off (not before, and not while parts still
/// arrive), in part order, and gone once deleted.
async fn incomplete_messages_are_found_when_stale(s: &Store) {
    let f = |r: i32, total: i32, seq: i32, body: &str| Fragment {
        modem: "m1".into(),
        sender: "+8613912345679".into(),
        concat_ref: r,
        total,
        seq,
        body: body.into(),
        received_at: Utc::now(),
    };
    for (r, total, seq, body) in [
        (9, 3, 3, "三"),
        (9, 3, 1, "一"),
        (10, 2, 1, "a"),
        (11, 3, 1, "x"),
    ] {
        assert_eq!(add_fragment(s, &f(r, total, seq, body)).await, None);
    }
    let two_hours_ago = match s.backend() {
        "sqlite" => "strftime('%Y-%m-%d %H:%M:%f', 'now', '-2 hours')",
        "postgres" => "now() - INTERVAL '2 hours'",
        _ => "UTC_TIMESTAMP(6) - INTERVAL 2 HOUR",
    };
    s.execute_raw(&format!(
        "UPDATE inbox_fragments SET created_at = {two_hours_ago} WHERE concat_ref IN (9, 11)"
    ))
    .await
    .unwrap();
    // Message 11 is still receiving: a part came just now.
    assert_eq!(add_fragment(s, &f(11, 3, 2, "y")).await, None);
    let before = Utc::now() - CDuration::hours(1);
    let stale = s.stale_fragments(before).await.unwrap();
    assert_eq!(stale.len(), 1, "{stale:?}");
    let g = &stale[0];
    assert_eq!(
        g.fragments.iter().map(|f| f.seq).collect::<Vec<_>>(),
        [1, 3]
    );
    assert_eq!(g.ids.len(), 2);
    assert_eq!(
        smsgw::store::join_fragments(3, &g.fragments),
        ("一[…]三".to_string(), 1)
    );
    s.delete_fragments(&g.ids).await.unwrap();
    assert!(s.stale_fragments(before).await.unwrap().is_empty());
    // Its reference starts afresh; the others are untouched.
    assert_eq!(add_fragment(s, &f(9, 3, 2, "二")).await, None);
    assert_eq!(
        add_fragment(s, &f(10, 2, 2, "b"))
            .await
            .map(|all| all.len()),
        Some(2)
    );
}

async fn concurrent_claimers_never_share_a_row(s: &Store) {
    for i in 0..300 {
        s.enqueue(&msg("10086", &format!("campaign {i}")))
            .await
            .unwrap();
    }
    let now = Utc::now() + CDuration::seconds(1);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let c = s.claim(&format!("w{w}"), 7, LEASE, now).await.unwrap();
                if c.is_empty() {
                    return mine;
                }
                mine.extend(c.into_iter().map(|c| c.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 300, "every row claimed once");
    assert_eq!(unique.len(), 300, "no row claimed twice");
}

async fn delivery_reports_match_parts_and_roll_up(s: &Store) {
    use smsgw::store::ReportUpdate;
    let t0 = Utc::now() - CDuration::hours(3);
    // An old message with MR 255 (three hours ago), then a two-part one whose second
    // part got MR 255 again after the counter wrapped.
    let old = s.enqueue(&msg("+8613800138000", "old")).await.unwrap().id;
    let new = s.enqueue(&msg("+8613800138000", "new")).await.unwrap().id;
    let part = |seq, mr, at| PartRecord {
        seq,
        total: if seq == 0 { 1 } else { 2 },
        modem: "m1".into(),
        recipient: "+8613800138000".into(),
        mr: Some(mr),
        submitted_at: at,
        status: Delivery::Pending,
    };
    s.record_part(
        old,
        &PartRecord {
            seq: 1,
            total: 1,
            ..part(1, 255, t0)
        },
    )
    .await
    .unwrap();
    let now = Utc::now();
    s.record_part(new, &part(1, 254, now)).await.unwrap();
    s.record_part(new, &part(2, 255, now)).await.unwrap();
    for id in [old, new] {
        s.claim("a", 5, LEASE, now + CDuration::seconds(1))
            .await
            .unwrap();
        let sent = Completion::Sent {
            modem: "m1".into(),
            parts_total: 2,
            report_requested: true,
        };
        s.complete("a", id, &sent, now).await.unwrap();
    }
    let report = |mr, to: &str, st: u8, status| ReportUpdate {
        modem: "m1".into(),
        mr,
        recipient: to.into(),
        since: now - CDuration::hours(1),
        tp_status: st,
        status,
        report_at: Utc::now(),
        discharge_at: Utc::now(),
    };
    // The national form of the number matches; the window excludes the old message.
    assert_eq!(
        s.apply_report(&report(255, "13800138000", 0x30, Delivery::Pending))
            .await
            .unwrap(),
        Some(new)
    );
    assert_eq!(
        s.get(new).await.unwrap().unwrap().delivery,
        "pending",
        "still trying is not final"
    );
    assert_eq!(
        s.apply_report(&report(255, "13800138000", 0x00, Delivery::Delivered))
            .await
            .unwrap(),
        Some(new)
    );
    assert_eq!(
        s.get(new).await.unwrap().unwrap().delivery,
        "pending",
        "one part of two delivered"
    );
    // A report for another number with the same MR matches nothing.
    assert_eq!(
        s.apply_report(&report(254, "+8613999999999", 0x00, Delivery::Delivered))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.apply_report(&report(254, "+8613800138000", 0x00, Delivery::Delivered))
            .await
            .unwrap(),
        Some(new)
    );
    assert_eq!(s.get(new).await.unwrap().unwrap().delivery, "delivered");
    let parts = s.parts(new).await.unwrap();
    assert!(parts.iter().all(|p| p.status == Delivery::Delivered));
    assert_eq!(s.get(old).await.unwrap().unwrap().delivery, "pending");
    // Counts for limits, from the database.
    let sent = s
        .parts_sent_since(now - CDuration::minutes(1))
        .await
        .unwrap();
    assert_eq!(sent, vec![("m1".to_string(), 2)]);
    let since = now - CDuration::minutes(1);
    for form in ["+8613800138000", "13800138000"] {
        assert_eq!(
            s.recipient_sent_since(form, None, since).await.unwrap(),
            2,
            "{form}"
        );
    }
    let category = s.get(new).await.unwrap().unwrap().category;
    assert_eq!(
        s.recipient_sent_since("13800138000", Some(&category), since)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.recipient_sent_since("13800138000", Some("no-such-category"), since)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.recipient_sent_since("13800138001", None, since)
            .await
            .unwrap(),
        0
    );
    // The old message never got a report: unknown after the timeout.
    assert_eq!(
        s.expire_pending_delivery(now - CDuration::minutes(1))
            .await
            .unwrap(),
        0,
        "sent_at is now for both"
    );
    s.execute_raw(&format!(
        "UPDATE outbox SET sent_at = created_at WHERE id = {old}"
    ))
    .await
    .unwrap();
    let n = s
        .expire_pending_delivery(Utc::now() + CDuration::seconds(1))
        .await
        .unwrap();
    assert!(n >= 1);
    assert_eq!(s.get(old).await.unwrap().unwrap().delivery, "unknown");
}

/// What the per-recipient daily limits count: a customer's messages sent since
/// `since` (in any number form, in one category when asked), and those on a modem
/// now; not a row that is only claimed, nor one sent before `since`.
async fn recipient_counts_include_messages_on_the_wire(s: &Store) {
    let to = |n: &str, c: &str| NewMessage {
        category: Some(c.into()),
        ..msg(n, "x")
    };
    let yesterday = s
        .enqueue(&to("+8613800138500", "greeting"))
        .await
        .unwrap()
        .id;
    let today = s.enqueue(&to("13800138500", "greeting")).await.unwrap().id;
    let on_wire = s.enqueue(&to("8613800138500", "notice")).await.unwrap().id;
    let _claimed_only = s.enqueue(&to("13800138500", "notice")).await.unwrap().id;
    let _other = s.enqueue(&to("13800138501", "notice")).await.unwrap().id;
    let now = Utc::now() + CDuration::seconds(1);
    let claimed = s.claim("a", 5, LEASE, now).await.unwrap();
    assert_eq!(claimed.len(), 5);
    let lease = |id: i64| claimed.iter().find(|c| c.id == id).unwrap().lease_until;
    let sent = Completion::Sent {
        modem: "m1".into(),
        parts_total: 1,
        report_requested: false,
    };
    for id in [yesterday, today] {
        assert!(s.complete("a", id, &sent, now).await.unwrap());
    }
    let a_day_earlier = match s.backend() {
        "sqlite" => "strftime('%Y-%m-%d %H:%M:%f', sent_at, '-1 day')",
        "postgres" => "sent_at - INTERVAL '1 day'",
        _ => "sent_at - INTERVAL 1 DAY",
    };
    s.execute_raw(&format!(
        "UPDATE outbox SET sent_at = {a_day_earlier} WHERE id = {yesterday}"
    ))
    .await
    .unwrap();
    assert!(s
        .set_inflight("a", on_wire, Some(1), lease(on_wire))
        .await
        .unwrap());
    let since = now - CDuration::hours(1);
    for form in ["+8613800138500", "13800138500"] {
        assert_eq!(
            s.recipient_sent_since(form, None, since).await.unwrap(),
            2,
            "{form}: sent today and on the wire"
        );
    }
    assert_eq!(
        s.recipient_sent_since("13800138500", Some("greeting"), since)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.recipient_sent_since("13800138500", Some("notice"), since)
            .await
            .unwrap(),
        1,
        "the notice on the wire; the one only claimed is not counted"
    );
    // Once it is sent it is counted once, not twice.
    assert!(s.complete("a", on_wire, &sent, now).await.unwrap());
    assert_eq!(
        s.recipient_sent_since("13800138500", None, since)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.recipient_sent_since("13800138500", None, now - CDuration::days(3))
            .await
            .unwrap(),
        3,
        "yesterday's, with an earlier `since`"
    );
}

/// A part is recorded the moment the modem acknowledges it, so its delivery report
/// can be handled before the message's completion is written (a database outage
/// delays both; the dispatcher also picks ready events in any order). The
/// completion must not turn `delivered` back into `pending`; and a message is not
/// `delivered` while a part of it has not even been sent.
async fn a_report_before_the_completion_is_kept(s: &Store) {
    use smsgw::store::ReportUpdate;
    let one = s
        .enqueue(&msg("+8613800138600", "one part"))
        .await
        .unwrap()
        .id;
    let two = s
        .enqueue(&msg("+8613800138601", "two parts"))
        .await
        .unwrap()
        .id;
    let now = Utc::now() + CDuration::seconds(1);
    assert_eq!(s.claim("a", 2, LEASE, now).await.unwrap().len(), 2);
    let part = |seq: i32, total: i32, mr: u8, to: &str| PartRecord {
        seq,
        total,
        modem: "m1".into(),
        recipient: to.into(),
        mr: Some(mr),
        submitted_at: now,
        status: Delivery::Pending,
    };
    let report = |mr: u8, to: &str| ReportUpdate {
        modem: "m1".into(),
        mr,
        recipient: to.into(),
        since: now - CDuration::hours(1),
        tp_status: 0,
        status: Delivery::Delivered,
        report_at: now,
        discharge_at: now,
    };
    // Acknowledged and reported while the rows are still being sent.
    s.record_part(one, &part(1, 1, 10, "+8613800138600"))
        .await
        .unwrap();
    s.record_part(two, &part(1, 2, 11, "+8613800138601"))
        .await
        .unwrap();
    assert_eq!(
        s.apply_report(&report(10, "+8613800138600")).await.unwrap(),
        Some(one)
    );
    assert_eq!(
        s.apply_report(&report(11, "+8613800138601")).await.unwrap(),
        Some(two)
    );
    assert_eq!(s.get(one).await.unwrap().unwrap().delivery, "delivered");
    assert_eq!(
        s.get(two).await.unwrap().unwrap().delivery,
        "pending",
        "part 2 is not sent yet"
    );
    // Then the completions.
    s.record_part(two, &part(2, 2, 12, "+8613800138601"))
        .await
        .unwrap();
    for (id, parts_total) in [(one, 1), (two, 2)] {
        let sent = Completion::Sent {
            modem: "m1".into(),
            parts_total,
            report_requested: true,
        };
        assert!(s.complete("a", id, &sent, now).await.unwrap());
    }
    let row = s.get(one).await.unwrap().unwrap();
    assert_eq!(
        (row.state.as_str(), row.delivery.as_str()),
        ("sent", "delivered"),
        "the completion kept the report's outcome"
    );
    assert_eq!(s.get(two).await.unwrap().unwrap().delivery, "pending");
    assert_eq!(
        s.apply_report(&report(12, "+8613800138601")).await.unwrap(),
        Some(two)
    );
    assert_eq!(s.get(two).await.unwrap().unwrap().delivery, "delivered");
}

/// Sends that finished together are completed in one call: each outcome is
/// written if the row is still ours, and a row another instance took over is
/// left to it, whatever else is in the batch.
async fn outcomes_of_sends_finished_together_are_written_together(s: &Store) {
    let x = s.enqueue(&msg("10086", "x")).await.unwrap().id;
    let y = s.enqueue(&msg("10087", "y")).await.unwrap().id;
    let z = s.enqueue(&msg("10088", "z")).await.unwrap().id;
    let now = Utc::now() + CDuration::seconds(1);
    assert_eq!(
        s.claim("a", 1, Duration::from_secs(10), now).await.unwrap()[0].id,
        x
    );
    assert_eq!(s.claim("a", 2, LEASE, now).await.unwrap().len(), 2);
    // x's lease runs out and b takes it over; y and z are still a's.
    s.rescue_expired(now + CDuration::seconds(11))
        .await
        .unwrap();
    let c = s
        .claim("b", 1, LEASE, now + CDuration::seconds(12))
        .await
        .unwrap();
    assert_eq!(c[0].id, x);
    let sent = Completion::Sent {
        modem: "m1".into(),
        parts_total: 1,
        report_requested: true,
    };
    let failed = Completion::Failed {
        error: "+CMS ERROR: 21".into(),
    };
    let batch = [(x, sent.clone()), (y, sent.clone()), (z, failed)];
    let ours: Vec<bool> = s
        .complete_all("a", &batch, now)
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ours, [false, true, true]);
    let state = |id| async move { s.get(id).await.unwrap().unwrap() };
    let rx = state(x).await;
    assert_eq!(
        (rx.state.as_str(), rx.lease_owner.as_deref()),
        ("sending", Some("b"))
    );
    assert_eq!(state(y).await.state.as_str(), "sent");
    assert_eq!(state(z).await.state.as_str(), "failed");
    // Written once: the same batch again holds nothing.
    let again = s.complete_all("a", &batch, now).await.unwrap();
    assert!(again.into_iter().all(|o| !o.unwrap()));
    assert_eq!(state(y).await.attempts, 1);
}

async fn urgent_categories_are_claimed_alone(s: &Store) {
    let now = Utc::now();
    let cat = |c: &str, p: i32| NewMessage {
        category: Some(c.into()),
        priority: p,
        ..msg("10086", c)
    };
    let g = s.enqueue(&cat("greeting", 9)).await.unwrap().id;
    let r = s.enqueue(&cat("reminder", 0)).await.unwrap().id;
    let n = s.enqueue(&cat("notice", 5)).await.unwrap().id;
    // "remind" is a prefix of "reminder": it must not match.
    let _ = s.enqueue(&cat("remind", 50)).await.unwrap().id;
    let later = now + CDuration::seconds(1);
    let urgent = ["reminder".to_string(), "notice".to_string()];
    let c = s.claim_only("a", 10, LEASE, later, &urgent).await.unwrap();
    let ids: Vec<i64> = c.iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        [r, n],
        "only the named categories, in the order listed"
    );
    let rest = s.claim("a", 10, LEASE, later).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[1].id, g);
}

async fn operator_actions_apply_only_to_their_states(s: &Store) {
    let now = Utc::now();
    let id = s.enqueue(&msg("13800138000", "a")).await.unwrap().id;
    // Queued: cancel works; retry and release do not.
    assert!(!s.operate(id, OperatorAction::Retry, now).await.unwrap());
    assert!(!s
        .operate(id, OperatorAction::ReleaseFail, now)
        .await
        .unwrap());
    assert!(s.operate(id, OperatorAction::Cancel, now).await.unwrap());
    let row = s.get(id).await.unwrap().unwrap();
    assert_eq!(row.state, "cancelled");
    assert_eq!(row.last_error.as_deref(), Some("cancelled by an operator"));
    // Cancelled -> retry -> claimable again at once.
    assert!(s.operate(id, OperatorAction::Retry, now).await.unwrap());
    let c = s
        .claim("a", 1, LEASE, now + CDuration::seconds(1))
        .await
        .unwrap();
    assert_eq!(c.len(), 1);
    // Sending: nothing applies (the lease holder decides).
    for a in [
        OperatorAction::Retry,
        OperatorAction::Cancel,
        OperatorAction::ReleaseResend,
        OperatorAction::ReleaseFail,
    ] {
        assert!(
            !s.operate(id, a, now).await.unwrap(),
            "{a:?} on a sending row"
        );
    }
    // Ambiguous: resend, or fail; and a late acknowledgement resolves it as sent.
    assert!(s
        .complete(
            "a",
            id,
            &Completion::Ambiguous {
                error: "hung".into()
            },
            now
        )
        .await
        .unwrap());
    assert!(s
        .operate(id, OperatorAction::ReleaseFail, now)
        .await
        .unwrap());
    assert_eq!(s.get(id).await.unwrap().unwrap().state, "failed");
    assert!(!s
        .resolve_sent(id, "m1", 1, Delivery::Pending, now)
        .await
        .unwrap());
    let id2 = s.enqueue(&msg("13800138001", "b")).await.unwrap().id;
    let t = now + CDuration::seconds(2);
    let c = s.claim("a", 1, LEASE, t).await.unwrap();
    assert_eq!(c[0].id, id2);
    assert!(s
        .complete(
            "a",
            id2,
            &Completion::Ambiguous {
                error: "hung".into()
            },
            t
        )
        .await
        .unwrap());
    assert!(s
        .resolve_sent(id2, "m1", 1, Delivery::Pending, t)
        .await
        .unwrap());
    let row = s.get(id2).await.unwrap().unwrap();
    assert_eq!(
        (
            row.state.as_str(),
            row.delivery.as_str(),
            row.modem.as_deref()
        ),
        ("sent", "pending", Some("m1"))
    );
    assert_eq!(row.last_error, None);
    assert!(
        !s.operate(id2, OperatorAction::Cancel, t).await.unwrap(),
        "sent is final"
    );
}

async fn activity_and_recipient_search(s: &Store) {
    let now = Utc::now();
    let a = s.enqueue(&msg("+8613800138000", "a")).await.unwrap().id;
    let b = s.enqueue(&msg("13900139000", "b")).await.unwrap().id;
    let t = now + CDuration::seconds(1);
    let act = s.activity(t).await.unwrap();
    assert_eq!(act.oldest_due.map(|o| o.0), Some(a), "{act:?}");
    assert_eq!(act.sent_last_hour, 0);
    let c = s.claim("a", 1, LEASE, t).await.unwrap();
    assert_eq!(c[0].id, a);
    let sent = Completion::Sent {
        modem: "m1".into(),
        parts_total: 1,
        report_requested: true,
    };
    assert!(s.complete("a", a, &sent, t).await.unwrap());
    let act = s.activity(t + CDuration::seconds(1)).await.unwrap();
    assert_eq!(act.sent_last_hour, 1);
    assert_eq!(act.oldest_due.map(|o| o.0), Some(b));
    // Any form of the number finds the row; another number does not.
    for form in ["13800138000", "+8613800138000", "8613800138000"] {
        let found = s.find_recipient(form).await.unwrap();
        assert_eq!(
            found.iter().map(|r| r.id).collect::<Vec<_>>(),
            [a],
            "{form}"
        );
    }
    assert!(s.find_recipient("13800138001").await.unwrap().is_empty());
    assert!(s.find_recipient("abc").await.unwrap().is_empty());
}

/// A restarted instance settles what its predecessor (same identity) left in
/// flight, without waiting for the lease: nothing on the wire -> queued again;
/// the marked part not recorded -> ambiguous, keeping part and modem for a late
/// +CMGS; every part recorded -> sent. Another identity's rows are untouched.
async fn a_restart_settles_the_predecessors_rows_at_once(s: &Store) {
    let now = Utc::now() + CDuration::seconds(1);
    for i in 0..4 {
        s.enqueue(&msg(&format!("1380013800{i}"), "x"))
            .await
            .unwrap();
    }
    let c = s.claim("me", 3, LEASE, now).await.unwrap();
    let other = s.claim("other", 1, LEASE, now).await.unwrap();
    let (idle, on_wire, done) = (c[0].id, c[1].id, c[2].id);
    let until = now + CDuration::seconds(300);
    assert!(s
        .hand_over("me", on_wire, 2, "m7", 3, until, now)
        .await
        .unwrap());
    let part = |seq| PartRecord {
        seq,
        total: 1,
        modem: "m7".into(),
        recipient: "13800138002".into(),
        mr: Some(9),
        submitted_at: now,
        status: Delivery::Pending,
    };
    s.record_part(on_wire, &part(1)).await.unwrap();
    assert!(s
        .hand_over("me", done, 1, "m7", 1, until, now)
        .await
        .unwrap());
    // The last part recorded (the marker stays on it), then the kill.
    assert!(s
        .part_acknowledged("me", done, &part(1), None, until)
        .await
        .unwrap());
    let r = s.settle_predecessor("me", now).await.unwrap();
    assert_eq!((r.retrying, r.ambiguous, r.sent), (1, 1, 1), "{r:?}");
    let state = |id| async move { s.get(id).await.unwrap().unwrap() };
    assert_eq!(state(idle).await.state, "retrying");
    let amb = state(on_wire).await;
    assert_eq!(amb.state, "ambiguous");
    assert!(amb.last_error.unwrap().contains("part 2 on modem m7"));
    let d = s.doubts_on("m7").await.unwrap();
    assert_eq!(
        (d.len(), d[0].id, d[0].seq, d[0].parts_total),
        (1, on_wire, 2, 3)
    );
    let sent = state(done).await;
    assert_eq!(
        (sent.state.as_str(), sent.delivery.as_str()),
        ("sent", "pending")
    );
    assert_eq!(
        state(other[0].id).await.state,
        "sending",
        "another instance's row"
    );
    // The queued-again row is claimable at once.
    assert_eq!(s.claim("me", 5, LEASE, now).await.unwrap()[0].id, idle);
}

/// The send's writes are guarded: a row whose lease was taken over cannot be
/// handed over or advanced (the send stops), but the acknowledged part is
/// recorded all the same (a fact).
async fn a_lost_lease_stops_the_send_but_keeps_the_fact(s: &Store) {
    let id = s.enqueue(&msg("10086", "x")).await.unwrap().id;
    let now = Utc::now() + CDuration::seconds(1);
    s.claim("a", 1, Duration::from_secs(10), now).await.unwrap();
    let until = now + CDuration::seconds(10);
    assert!(s.hand_over("a", id, 1, "m1", 2, until, now).await.unwrap());
    // a's lease expires; b's rescuer settles it (part 1 in doubt); a renews too late.
    let later = now + CDuration::seconds(11);
    assert_eq!(s.rescue_expired(later).await.unwrap().ambiguous, 1);
    assert_eq!(
        s.renew_leases("a", later + CDuration::seconds(60))
            .await
            .unwrap(),
        0
    );
    let p = PartRecord {
        seq: 1,
        total: 2,
        modem: "m1".into(),
        recipient: "10086".into(),
        mr: Some(3),
        submitted_at: now,
        status: Delivery::Pending,
    };
    assert!(
        !s.part_acknowledged("a", id, &p, Some(2), later)
            .await
            .unwrap(),
        "no longer a's: the send must stop before part 2"
    );
    assert_eq!(
        s.parts(id).await.unwrap().len(),
        1,
        "the acknowledged part is recorded"
    );
    assert!(!s
        .hand_over("a", id, 2, "m1", 2, later, later)
        .await
        .unwrap());
}

/// The last part of an incoming message stores the whole message (and its
/// opt-out) and removes the parts in one transaction; a part read again after
/// that (a crash before its deletion from the SIM) is recognised, not kept
/// for ever waiting for parts that came long ago.
async fn the_last_fragment_stores_the_message_in_one_transaction(s: &Store) {
    let at = Utc::now();
    let f = |seq: i32, body: &str| Fragment {
        modem: "m1".into(),
        sender: "+8613912340000".into(),
        concat_ref: 5,
        total: 2,
        seq,
        body: body.into(),
        received_at: at,
    };
    let keywords = vec!["TD".to_string()];
    let join = |all: &[Fragment]| smsgw::dispatch::inbound::joined(all, &keywords);
    assert_eq!(
        s.add_fragment(&f(2, "D"), join).await.unwrap(),
        smsgw::store::FragmentOutcome::Waiting
    );
    let smsgw::store::FragmentOutcome::Stored { message, new } =
        s.add_fragment(&f(1, "T"), join).await.unwrap()
    else {
        panic!("the last part completes the message")
    };
    assert!(new && message.opt_out && message.body == "TD");
    assert!(
        s.is_opted_out("13912340000").await.unwrap(),
        "the opt-out came with it"
    );
    assert!(s
        .stale_fragments(Utc::now() + CDuration::hours(1))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.add_fragment(&f(1, "T"), join).await.unwrap(),
        smsgw::store::FragmentOutcome::AlreadyStored,
        "a part of a stored message read again"
    );
    assert!(s
        .stale_fragments(Utc::now() + CDuration::hours(1))
        .await
        .unwrap()
        .is_empty());
    // A new message reusing the 8-bit reference (other timestamps) is not confused with it.
    let later = |seq: i32| Fragment {
        received_at: at + CDuration::minutes(5),
        ..f(seq, "x")
    };
    assert_eq!(
        s.add_fragment(&later(1), join).await.unwrap(),
        smsgw::store::FragmentOutcome::Waiting
    );
}

/// Opt-outs and per-recipient counts compare E.164 forms, never a tail: a bare
/// 8-digit local number opts out only itself.
async fn numbers_are_compared_whole(s: &Store) {
    s.add_opt_out("38001380", Some("TD"), "sms").await.unwrap();
    assert!(s.is_opted_out("38001380").await.unwrap());
    assert!(!s.is_opted_out("+8613838001380").await.unwrap());
    assert!(!s.is_opted_out("13838001380").await.unwrap());
    s.add_opt_out("8613900001111", Some("TD"), "sms")
        .await
        .unwrap();
    assert!(s.is_opted_out("+8613900001111").await.unwrap());
    assert!(s.is_opted_out("13900001111").await.unwrap());
    assert!(s.is_opted_out("0086 139 0000 1111").await.unwrap());
    assert!(!s.is_opted_out("+8613900001112").await.unwrap());
}

/// What the compatibility layers read: calls, incoming messages after a
/// cursor, a row by its dedupe key, and parts with their reports.
async fn calls_inbox_cursor_and_dedupe_lookups(s: &Store) {
    use smsgw::store::Call;
    let at = chrono::Utc::now();
    for (caller, hung_up) in [(Some("+8613912345678"), true), (None, false)] {
        s.insert_call(&Call {
            modem: "m1".into(),
            caller: caller.map(str::to_string),
            received_at: at,
            hung_up,
        })
        .await
        .unwrap();
    }
    let calls = s
        .calls_after(0, chrono::Utc::now() + chrono::Duration::days(1), 10)
        .await
        .unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].1.caller.as_deref(), Some("+8613912345678"));
    assert!(calls[0].1.hung_up && !calls[1].1.hung_up);
    assert_eq!(calls[1].1.caller, None);
    assert_eq!(
        s.calls_after(
            calls[0].0,
            chrono::Utc::now() + chrono::Duration::days(1),
            10
        )
        .await
        .unwrap()
        .len(),
        1
    );
    let mut m = NewMessage::new("+8613800138000", "x");
    m.dedupe_key = Some("gammu:1:20261203".into());
    let id = s.enqueue(&m).await.unwrap().id;
    assert_eq!(
        s.by_dedupe_key("gammu:1:20261203")
            .await
            .unwrap()
            .unwrap()
            .id,
        id
    );
    assert!(s.by_dedupe_key("gammu:2:x").await.unwrap().is_none());
    assert!(s.part_reports(id).await.unwrap().is_empty());
}

/// The compatibility layers' persisted cursors only move forward, and the
/// reports recorded after a cursor come back once each, in recording order,
/// only for the layer's own rows.
async fn compat_cursors_and_reports_after_them(s: &Store) {
    use smsgw::store::{ReportCursor, ReportUpdate};
    assert_eq!(s.cursor("gammu:inbox").await.unwrap(), None);
    s.set_cursor("gammu:inbox", 7, 0).await.unwrap();
    s.set_cursor("gammu:inbox", 5, 0).await.unwrap();
    assert_eq!(
        s.cursor("gammu:inbox").await.unwrap(),
        Some((7, 0)),
        "never back"
    );
    s.set_cursor("gammu:inbox", 9, 0).await.unwrap();
    assert_eq!(s.cursor("gammu:inbox").await.unwrap(), Some((9, 0)));
    assert_eq!(s.cursor("smsserver:inbox").await.unwrap(), None);
    // A pair moves as one: a later value with a lower part is forward, the
    // same value with a lower part is back.
    s.set_cursor("r", 100, 50).await.unwrap();
    s.set_cursor("r", 101, 3).await.unwrap();
    assert_eq!(s.cursor("r").await.unwrap(), Some((101, 3)));
    s.set_cursor("r", 101, 2).await.unwrap();
    s.set_cursor("r", 100, 99).await.unwrap();
    assert_eq!(s.cursor("r").await.unwrap(), Some((101, 3)));
    s.set_cursor("r", 101, 4).await.unwrap();
    assert_eq!(s.cursor("r").await.unwrap(), Some((101, 4)));

    let now = Utc::now();
    let mut ids = vec![];
    for (i, key) in ["smsserver:1:a", "gammu:2:b", "smsserver:3:c"]
        .iter()
        .enumerate()
    {
        let mut m = msg(&format!("+861380013800{i}"), "r");
        m.dedupe_key = Some(key.to_string());
        m.request_report = true;
        let id = s.enqueue(&m).await.unwrap().id;
        s.record_part(
            id,
            &PartRecord {
                seq: 1,
                total: 1,
                modem: "m1".into(),
                recipient: format!("+861380013800{i}"),
                mr: Some(10 + i as u8),
                submitted_at: now,
                status: Delivery::Pending,
            },
        )
        .await
        .unwrap();
        ids.push(id);
    }
    let none = s
        .reports_after(
            "smsserver:",
            ReportCursor::default(),
            now + CDuration::minutes(1),
            10,
        )
        .await
        .unwrap();
    assert!(none.is_empty(), "no report recorded yet: {none:?}");
    // Reports come in for the third row, then the second (gammu's), then the first.
    for i in [2usize, 1, 0] {
        let r = ReportUpdate {
            modem: "m1".into(),
            mr: 10 + i as u8,
            recipient: format!("+861380013800{i}"),
            since: now - CDuration::hours(1),
            tp_status: 0,
            status: Delivery::Delivered,
            report_at: now + CDuration::seconds(10 - i as i64),
            discharge_at: now,
        };
        assert_eq!(s.apply_report(&r).await.unwrap(), Some(ids[i]));
    }
    let got = s
        .reports_after(
            "smsserver:",
            ReportCursor::default(),
            now + CDuration::minutes(1),
            10,
        )
        .await
        .unwrap();
    let keys: Vec<_> = got.iter().map(|r| r.dedupe_key.clone().unwrap()).collect();
    assert_eq!(
        keys,
        ["smsserver:3:c", "smsserver:1:a"],
        "oldest report first"
    );
    assert_eq!(got[0].report.part.status, Delivery::Delivered);
    let rest = s
        .reports_after("smsserver:", got[0].cursor, now + CDuration::minutes(1), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].dedupe_key.as_deref(), Some("smsserver:1:a"));
    assert!(s
        .reports_after(
            "smsserver:",
            rest[0].cursor,
            now + CDuration::minutes(1),
            10
        )
        .await
        .unwrap()
        .is_empty());
    // The same report recorded again (a journal replayed) is not new.
    let again = ReportUpdate {
        modem: "m1".into(),
        mr: 10,
        recipient: "+8613800138000".into(),
        since: now - CDuration::hours(1),
        tp_status: 0,
        status: Delivery::Delivered,
        report_at: now + CDuration::seconds(30),
        discharge_at: now,
    };
    assert_eq!(s.apply_report(&again).await.unwrap(), Some(ids[0]));
    let after = s
        .reports_after(
            "smsserver:",
            rest[0].cursor,
            now + CDuration::minutes(1),
            10,
        )
        .await
        .unwrap();
    assert!(
        after.is_empty(),
        "a repeated report came back as new: {after:?}"
    );
}

/// Pickup without a poll: another system's INSERT wakes the store's watch within
/// a fraction of a second on every backend (NOTIFY, data_version, id watermark),
/// and an idle database wakes nothing.
async fn inserts_by_another_system_wake_the_watch(s: &Store) {
    let w = s.watch().await.unwrap();
    // Long enough for every watcher to take its first reading.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(700), w.changed())
            .await
            .is_err(),
        "woken while nothing changed"
    );
    for round in 0..3 {
        let t = std::time::Instant::now();
        s.execute_raw(&format!(
            "INSERT INTO outbox (recipient, body) VALUES ('10086', 'wake up {round}')"
        ))
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(3), w.changed())
            .await
            .unwrap_or_else(|_| panic!("round {round}: the insert woke nothing"));
        assert!(
            t.elapsed() < Duration::from_millis(800),
            "round {round}: woken after {:?}",
            t.elapsed()
        );
    }
    // A claim that finds nothing due changes nothing, so it wakes nothing: the
    // dispatcher's own empty claims never keep it spinning.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = tokio::time::timeout(Duration::from_millis(10), w.changed()).await;
    let claimed = s
        .claim(
            "w",
            16,
            Duration::from_secs(60),
            Utc::now() - CDuration::days(1),
        )
        .await
        .unwrap();
    assert!(claimed.is_empty());
    assert!(
        tokio::time::timeout(Duration::from_millis(500), w.changed())
            .await
            .is_err(),
        "an empty claim woke the watch"
    );
}

/// The database's clock, as one value on every backend.
async fn the_database_clock_is_readable(s: &Store) {
    let db = s.db_now().await.unwrap();
    assert!((db - Utc::now()).num_seconds().abs() < 5, "{db}");
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
            if let Some(f) = super::fresh(super::Backend::Sqlite).await { super::$name(&f.store).await } } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
            if let Some(f) = super::fresh(super::Backend::Postgres).await { super::$name(&f.store).await } } )* }
        mod mysql { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
            if let Some(f) = super::fresh(super::Backend::Mysql).await { super::$name(&f.store).await } } )* }
    };
}

conformance!(
    calls_inbox_cursor_and_dedupe_lookups,
    compat_cursors_and_reports_after_them,
    inserts_by_another_system_wake_the_watch,
    outcomes_of_sends_finished_together_are_written_together,
    migrations_are_idempotent,
    claim_order_priority_then_due_then_id,
    chinese_and_emoji_survive,
    dedupe_key_queues_once,
    completion_is_guarded_by_the_lease,
    rescue_holds_rows_with_a_part_on_the_wire,
    requeued_rows_keep_their_place,
    acknowledged_parts_are_recorded_once_and_never_forgotten,
    retries_wait_for_their_due_time,
    every_terminal_transition,
    schema_enforces_the_lifecycle,
    rows_from_other_systems_are_validated,
    opt_outs_and_inbox,
    fragments_reassemble_across_restarts,
    incomplete_messages_are_found_when_stale,
    concurrent_claimers_never_share_a_row,
    delivery_reports_match_parts_and_roll_up,
    recipient_counts_include_messages_on_the_wire,
    a_report_before_the_completion_is_kept,
    urgent_categories_are_claimed_alone,
    operator_actions_apply_only_to_their_states,
    activity_and_recipient_search,
    a_restart_settles_the_predecessors_rows_at_once,
    a_lost_lease_stops_the_send_but_keeps_the_fact,
    the_last_fragment_stores_the_message_in_one_transaction,
    numbers_are_compared_whole,
    the_database_clock_is_readable,
);

#[test]
fn unknown_url_scheme_is_a_clear_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt
        .block_on(Store::connect("oracle://u:pw@h/db"))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("not sqlite://, postgres:// or mysql://"),
        "{e}"
    );
    assert!(!e.to_string().contains("pw"), "password leaked: {e}");
}

/// Extra checks that only make sense on one backend.
mod specific {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_insert_by_another_system_notifies_at_once() {
        let Some(f) = fresh(Backend::Postgres).await else {
            return;
        };
        let admin = std::env::var("SMSGW_TEST_PG_URL")
            .unwrap_or("postgres://postgres@127.0.0.1:5432/test".into());
        let url = format!(
            "{}/{}",
            admin.rsplit_once('/').unwrap().0,
            f.db.as_deref().unwrap()
        );
        let mut l = sqlx::postgres::PgListener::connect(&url).await.unwrap();
        l.listen("smsgw_outbox").await.unwrap();
        let started = std::time::Instant::now();
        f.store
            .execute_raw("INSERT INTO outbox (recipient, body) VALUES ('10086', 'wake up')")
            .await
            .unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), l.recv())
            .await
            .expect("no notification")
            .unwrap();
        assert_eq!(n.channel(), "smsgw_outbox");
        assert!(started.elapsed() < Duration::from_secs(2));
        // A bulk insert is one notification, not one per row.
        f.store
            .execute_raw("INSERT INTO outbox (recipient, body) SELECT '10086', 'bulk' FROM generate_series(1, 500)")
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), l.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(300), l.recv())
                .await
                .is_err(),
            "one notification per statement"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_connections_killed_by_a_restart_are_replaced() {
        let Some(f) = fresh(Backend::Postgres).await else {
            return;
        };
        f.store.enqueue(&msg("10086", "before")).await.unwrap();
        // What a server restart does to our connections.
        let admin = Store::connect(
            &std::env::var("SMSGW_TEST_PG_URL")
                .unwrap_or("postgres://postgres@127.0.0.1:5432/test".into()),
        )
        .await
        .unwrap();
        // Only this test's database: other tests run in parallel.
        let db = f.db.clone().unwrap();
        let killed = admin
            .execute_raw(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
            ))
            .await
            .unwrap();
        assert!(killed >= 1, "no connection was terminated");
        // The pool notices dead connections and opens new ones; at most one call fails.
        let mut ok = false;
        for _ in 0..3 {
            if f.store.enqueue(&msg("10086", "after")).await.is_ok() {
                ok = true;
                break;
            }
        }
        assert!(ok, "the store did not reconnect");
        let total: i64 = f.store.counts().await.unwrap().iter().map(|c| c.2).sum();
        assert_eq!(total, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_never_locked_while_another_connection_inserts() {
        let Some(f) = fresh(Backend::Sqlite).await else {
            return;
        };
        let url = format!(
            "sqlite://{}/smsgw.db",
            f._dir.as_ref().unwrap().path().display()
        );
        // "Another process": its own pool on the same file, inserting as fast as it can.
        let other = Store::connect(&url).await.unwrap();
        let writer = tokio::spawn(async move {
            for i in 0..400 {
                other
                    .execute_raw(&format!(
                        "INSERT INTO outbox (recipient, body) VALUES ('10086', 'ext {i}')"
                    ))
                    .await
                    .expect("the other writer was locked out");
            }
        });
        let mut claimed = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while claimed < 400 && std::time::Instant::now() < deadline {
            let now = Utc::now() + CDuration::seconds(1);
            let c = f
                .store
                .claim("d", 16, LEASE, now)
                .await
                .expect("claim locked out");
            for row in &c {
                let done = Completion::Sent {
                    modem: "m1".into(),
                    parts_total: 1,
                    report_requested: false,
                };
                assert!(f
                    .store
                    .complete("d", row.id, &done, now)
                    .await
                    .expect("complete locked out"));
            }
            claimed += c.len();
        }
        writer.await.unwrap();
        assert_eq!(claimed, 400);
    }
}

/// The SQL in docs/integration.md, executed on the backend it is written for.
mod documented_sql {
    use super::*;

    /// The first ```sql block after `heading`, split into statements; statements
    /// with placeholders or on tables of the caller's own (`customers`) are skipped.
    fn statements(heading: &str) -> Vec<String> {
        let doc = include_str!("../../docs/integration.md");
        let at = doc
            .find(heading)
            .unwrap_or_else(|| panic!("no heading {heading}"));
        let block = doc[at..]
            .split("```sql")
            .nth(1)
            .unwrap()
            .split("```")
            .next()
            .unwrap();
        block
            .split(';')
            .map(str::trim)
            .filter(|s| {
                !s.is_empty() && !s.contains("$1") && !s.contains('?') && !s.contains("customers")
            })
            .map(String::from)
            .collect()
    }

    async fn run(b: Backend, heading: &str) {
        let Some(f) = fresh(b).await else { return };
        let stmts = statements(heading);
        assert!(stmts.len() >= 2, "{heading}: {stmts:?}");
        for sql in &stmts {
            f.store
                .execute_raw(sql)
                .await
                .unwrap_or_else(|e| panic!("{heading}: {sql}\n{e}"));
        }
        let n: i64 = f.store.counts().await.unwrap().iter().map(|c| c.2).sum();
        assert_eq!(n, 1, "{heading}: the example inserts one row");
        // And smsgw can claim what the example inserted (once it is due).
        let c = f
            .store
            .claim("t", 5, LEASE, Utc::now() + CDuration::hours(2))
            .await
            .unwrap();
        assert_eq!(c.len(), 1);
        assert!(matches!(
            contract::check(&c[0], 10, Utc::now()),
            Verdict::Send { .. }
        ));
    }

    /// The clean-up SQL: an old final row goes with its parts; an old row still
    /// waiting to be sent stays, and so does a final row of today.
    async fn clean_up(b: Backend, heading: &str) {
        let Some(f) = fresh(b).await else { return };
        let s = &f.store;
        let old_sent = s.enqueue(&msg("10086", "old")).await.unwrap().id;
        let old_queued = s.enqueue(&msg("10086", "old, queued")).await.unwrap().id;
        let new_sent = s.enqueue(&msg("10086", "new")).await.unwrap().id;
        let now = Utc::now() + CDuration::seconds(1);
        let claimed = s.claim("t", 1, LEASE, now).await.unwrap();
        assert_eq!(claimed[0].id, old_sent);
        let part = PartRecord {
            seq: 1,
            total: 1,
            modem: "m1".into(),
            recipient: "10086".into(),
            mr: Some(1),
            submitted_at: now,
            status: Delivery::Delivered,
        };
        s.record_part(old_sent, &part).await.unwrap();
        let sent = Completion::Sent {
            modem: "m1".into(),
            parts_total: 1,
            report_requested: false,
        };
        assert!(s.complete("t", old_sent, &sent, now).await.unwrap());
        s.execute_raw(&format!(
            "UPDATE outbox SET state = 'sent', sent_at = updated_at WHERE id = {new_sent}"
        ))
        .await
        .unwrap();
        let long_ago = match s.backend() {
            "sqlite" => "strftime('%Y-%m-%d %H:%M:%f', 'now', '-200 days')",
            "postgres" => "now() - interval '200 days'",
            _ => "UTC_TIMESTAMP() - INTERVAL 200 DAY",
        };
        s.execute_raw(&format!(
            "UPDATE outbox SET updated_at = {long_ago} WHERE id IN ({old_sent}, {old_queued})"
        ))
        .await
        .unwrap();
        let stmts = statements(heading);
        assert!(stmts.len() >= 2, "{heading}: {stmts:?}");
        for sql in &stmts {
            s.execute_raw(sql)
                .await
                .unwrap_or_else(|e| panic!("{heading}: {sql}\n{e}"));
        }
        assert!(
            s.get(old_sent).await.unwrap().is_none(),
            "old sent row deleted"
        );
        assert!(
            s.parts(old_sent).await.unwrap().is_empty(),
            "with its parts"
        );
        assert!(
            s.get(old_queued).await.unwrap().is_some(),
            "a queued row stays"
        );
        assert!(
            s.get(new_sent).await.unwrap().is_some(),
            "today's row stays"
        );
    }

    #[tokio::test]
    async fn clean_up_sqlite() {
        clean_up(Backend::Sqlite, "### Old rows on SQLite").await
    }

    #[tokio::test]
    async fn clean_up_postgres() {
        clean_up(Backend::Postgres, "### Old rows on PostgreSQL").await
    }

    #[tokio::test]
    async fn clean_up_mysql() {
        clean_up(Backend::Mysql, "### Old rows on MySQL / MariaDB").await
    }

    #[tokio::test]
    async fn sqlite() {
        run(Backend::Sqlite, "### SQLite").await
    }

    #[tokio::test]
    async fn postgres() {
        run(Backend::Postgres, "### PostgreSQL").await
    }

    #[tokio::test]
    async fn mysql() {
        run(Backend::Mysql, "### MySQL 8 / MariaDB").await
    }
}

/// The SQLite directory may be shared with local writers (group smsgw-outbox):
/// a symbolic link they plant as the database or its -wal/-shm file is refused,
/// and the file it points at is left alone.
#[tokio::test]
async fn sqlite_files_planted_as_symlinks_are_refused() {
    for suffix in ["", "-wal", "-shm"] {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("daemon-private.journal");
        std::fs::write(&victim, "precious").unwrap();
        let db = dir.path().join("smsgw.db");
        if !suffix.is_empty() {
            // The database exists (an empty file is one); the writer adds a link.
            std::fs::write(&db, "").unwrap();
        }
        std::os::unix::fs::symlink(&victim, format!("{}{suffix}", db.display())).unwrap();
        let e = Store::connect(&format!("sqlite://{}", db.display()))
            .await
            .err()
            .unwrap_or_else(|| panic!("a symlinked {suffix:?} file was used"));
        assert!(e.to_string().contains("symbolic link"), "{suffix:?}: {e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }
}

/// SQLite's watch after a quiet spell: an insert by another connection pool,
/// as another process makes it, wakes it promptly, again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_watch_wakes_after_a_quiet_spell() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    let daemon = Store::connect(&url).await.unwrap();
    daemon.migrate().await.unwrap();
    let w = daemon.watch().await.unwrap();
    let other = Store::connect(&url).await.unwrap();
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let _ = tokio::time::timeout(Duration::from_millis(1), w.changed()).await;
        let t = std::time::Instant::now();
        other
            .execute_raw(&format!(
                "INSERT INTO outbox (recipient, body) VALUES ('10086', 'quiet {round}')"
            ))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(3), w.changed())
            .await
            .unwrap_or_else(|_| panic!("round {round}: the insert woke nothing"));
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "round {round}: woken after {:?}",
            t.elapsed()
        );
    }
}
