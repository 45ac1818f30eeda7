//! Store benchmark (prints figures; see docs/benchmarks.md). For each backend, on a
//! fresh database: queue 1,000,000 rows, then measure claim latency and claim +
//! complete throughput against that backlog, then insert-to-claim pickup latency
//! (PostgreSQL woken by its insert notification, SQLite and MariaDB by polling),
//! then the per-recipient daily count and housekeeping's report timeout once those
//! rows are a year of history.
//!
//! Run: `cargo bench --bench store` (`-- quick` for 100,000 rows; `-- sqlite`,
//! `-- postgres` or `-- mysql` for one backend). Needs the same servers as the tests.

use chrono::{Duration as CDuration, Utc};
use smsgw::store::{Completion, Store};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_secs(5);

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn fresh(backend: &str, dir: &std::path::Path) -> (Store, Option<(Store, String)>) {
    match backend {
        "sqlite" => (
            Store::connect(&format!("sqlite://{}/bench.db", dir.display()))
                .await
                .unwrap(),
            None,
        ),
        _ => {
            let admin_url = if backend == "postgres" {
                std::env::var("SMSGW_TEST_PG_URL")
                    .unwrap_or("postgres://postgres@127.0.0.1:5432/test".into())
            } else {
                std::env::var("SMSGW_TEST_MYSQL_URL")
                    .unwrap_or("mysql://root@127.0.0.1:3306/test".into())
            };
            let admin = Store::connect(&admin_url).await.unwrap();
            let db = format!("smsgw_bench_{}", std::process::id());
            admin
                .execute_raw(&format!("DROP DATABASE IF EXISTS {db}"))
                .await
                .unwrap();
            admin
                .execute_raw(&format!("CREATE DATABASE {db}"))
                .await
                .unwrap();
            let url = format!("{}/{db}", admin_url.rsplit_once('/').unwrap().0);
            (Store::connect(&url).await.unwrap(), Some((admin, db)))
        }
    }
}

/// Inserts `n` queued greetings server-side, as a campaign import would.
async fn fill(s: &Store, backend: &str, n: u64) -> Duration {
    let t = Instant::now();
    let body = "尊敬的客户：中秋快乐，阖家幸福！";
    match backend {
        "postgres" => {
            s.execute_raw(&format!(
                "INSERT INTO outbox (recipient, body, category) SELECT '+86138' || lpad(g::text, 8, '0'), '{body}', 'greeting' FROM generate_series(1, {n}) g"
            ))
            .await
            .unwrap();
        }
        _ => {
            // Batches of 100,000 from a digits cross join (portable to SQLite and MariaDB).
            s.execute_raw("CREATE TABLE bench_digits (d INTEGER)")
                .await
                .unwrap();
            s.execute_raw(
                "INSERT INTO bench_digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)",
            )
            .await
            .unwrap();
            let concat = if backend == "sqlite" {
                "'+86138' || (a.d*10000 + b.d*1000 + c.d*100 + e.d*10 + f.d + 100000 * {k})"
            } else {
                "CONCAT('+86138', a.d*10000 + b.d*1000 + c.d*100 + e.d*10 + f.d + 100000 * {k})"
            };
            for k in 0..n / 100_000 {
                let expr = concat.replace("{k}", &k.to_string());
                s.execute_raw(&format!(
                    "INSERT INTO outbox (recipient, body, category) SELECT {expr}, '{body}', 'greeting'
                     FROM bench_digits a, bench_digits b, bench_digits c, bench_digits e, bench_digits f"
                ))
                .await
                .unwrap();
            }
        }
    }
    t.elapsed()
}

async fn run(backend: &str, n: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (s, admin) = fresh(backend, dir.path()).await;
    s.migrate().await.unwrap();
    let fill_time = fill(&s, backend, n).await;
    let later = Utc::now() + CDuration::seconds(5);
    // Claim latency: batches of 16 from the full backlog.
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let c = s
            .claim("bench", 16, Duration::from_secs(600), later)
            .await
            .unwrap();
        lat.push(t.elapsed());
        assert_eq!(c.len(), 16);
    }
    // Throughput: claim 16, complete each (what a dispatcher does), for 3 s.
    let t = Instant::now();
    let mut done = 0u64;
    while t.elapsed() < Duration::from_secs(3) {
        for c in s
            .claim("bench", 16, Duration::from_secs(600), later)
            .await
            .unwrap()
        {
            let sent = Completion::Sent {
                modem: "m1".into(),
                parts_total: 1,
                report_requested: true,
            };
            assert!(s.complete("bench", c.id, &sent, later).await.unwrap());
            done += 1;
        }
    }
    let rate = done as f64 / t.elapsed().as_secs_f64();
    // Pickup latency on an empty queue: "another system" inserts at random moments;
    // a dispatcher wakes on the store's watch, with a poll on a fixed tick behind it.
    s.execute_raw("UPDATE outbox SET state = 'cancelled' WHERE state IN ('queued', 'retrying')")
        .await
        .unwrap();
    let inserted = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let (ins, st) = (inserted.clone(), s.clone());
    let inserter = tokio::spawn(async move {
        let mut seed = 12345u64;
        for i in 0..20 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            tokio::time::sleep(Duration::from_millis(100 + (seed >> 33) % 400)).await;
            let t0 = Instant::now();
            let id = st
                .enqueue(&smsgw::store::NewMessage::new(
                    "10086",
                    &format!("pickup {i}"),
                ))
                .await
                .unwrap()
                .id;
            ins.lock().unwrap().insert(id, t0);
        }
    });
    let watch = s.watch().await.unwrap();
    let mut pickup = Vec::new();
    let mut tick = tokio::time::interval(POLL);
    while pickup.len() < 20 {
        tokio::select! { _ = tick.tick() => {}, _ = watch.changed() => {} }
        for c in s
            .claim(
                "bench",
                16,
                Duration::from_secs(600),
                Utc::now() + CDuration::seconds(1),
            )
            .await
            .unwrap()
        {
            if let Some(t0) = inserted.lock().unwrap().get(&c.id) {
                pickup.push(t0.elapsed());
            }
        }
    }
    inserter.await.unwrap();
    println!(
        "{backend:8} {n} rows queued in {fill_time:.1?} | claim 16: median {:.2?}, p99 {:.2?} | claim+complete {rate:.0} rows/s | pickup median {:.1?}, max {:.1?} ({})",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut pickup, 0.5),
        pct(&mut pickup, 1.0),
        match backend {
            "postgres" => "LISTEN/NOTIFY",
            "sqlite" => "data_version every 50 ms",
            _ => "id watermark every 100 ms",
        },
    );
    let h = history(&s, backend).await;
    println!(
        "{backend:8} over {n} rows of history: per-recipient daily count median {:.2?} \
         (before migration 0003: {:.2?}, {:.0}x) | report timeout median {:.2?} (before: {:.2?}, {:.0}x) \
         | status counts median {:.2?} (before: {:.2?}, {:.1}x)",
        h.count,
        h.count_before,
        h.count_before.as_secs_f64() / h.count.as_secs_f64(),
        h.timeout,
        h.timeout_before,
        h.timeout_before.as_secs_f64() / h.timeout.as_secs_f64(),
        h.counts,
        h.counts_before,
        h.counts_before.as_secs_f64() / h.counts.as_secs_f64(),
    );
    drop(s);
    if let Some((admin, db)) = admin {
        let force = if backend == "postgres" {
            " WITH (FORCE)"
        } else {
            ""
        };
        admin
            .execute_raw(&format!("DROP DATABASE IF EXISTS {db}{force}"))
            .await
            .unwrap();
    }
}

/// Figures over a year of history: the per-recipient daily count
/// (`Store::recipient_sent_since`, before every send when such a limit is set)
/// and housekeeping's report timeout (`Store::expire_pending_delivery`, every
/// 30 s), each now and as before migration 0003 (its indexes dropped, and for the
/// count the single-statement query it replaced), on the same data.
struct History {
    count: Duration,
    count_before: Duration,
    timeout: Duration,
    timeout_before: Duration,
    /// `Store::counts` (status and metrics: messages per state and category).
    counts: Duration,
    counts_before: Duration,
}

async fn history(s: &Store, backend: &str) -> History {
    let days_ago = match backend {
        "sqlite" => "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (id % 365) || ' days')",
        "postgres" => "now() - (id % 365) * INTERVAL '1 day'",
        _ => "UTC_TIMESTAMP(6) - INTERVAL (id % 365) DAY",
    };
    s.execute_raw(&format!(
        "UPDATE outbox SET state = 'sent', delivery = 'delivered', modem = 'm1', parts_total = 1,
            lease_owner = NULL, lease_until = NULL, sent_at = {days_ago}
          WHERE state IN ('queued', 'retrying', 'cancelled', 'sending')"
    ))
    .await
    .unwrap();
    s.execute_raw(
        "INSERT INTO outbox_parts (outbox_id, seq, total, modem, recipient, mr, submitted_at, status)
         SELECT id, 1, 1, 'm1', recipient, id % 256, sent_at, 'delivered' FROM outbox WHERE sent_at IS NOT NULL",
    )
    .await
    .unwrap();
    // The last day's sends still wait for their reports.
    let day_ago = match backend {
        "sqlite" => "strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 day')",
        "postgres" => "now() - INTERVAL '1 day'",
        _ => "UTC_TIMESTAMP(6) - INTERVAL 1 DAY",
    };
    for sql in [
        format!("UPDATE outbox SET delivery = 'pending' WHERE sent_at >= {day_ago}"),
        format!("UPDATE outbox_parts SET status = 'pending' WHERE submitted_at >= {day_ago}"),
    ] {
        s.execute_raw(&sql).await.unwrap();
    }
    if backend == "postgres" {
        // What autovacuum does after 10 % of a table changed: these were rewritten
        // a moment ago, and the planner's statistics still say "nothing is sent".
        s.execute_raw("ANALYZE").await.unwrap();
    }
    let since = Utc::now() - CDuration::hours(12);
    // Nothing pending is older than this: what all but the rare run find.
    let cutoff = since - CDuration::days(2);
    let since_text = since.format("%Y-%m-%d %H:%M:%S%.3f");
    let old_count = |i: u32| {
        format!(
            "SELECT recipient, COUNT(*) FROM outbox WHERE recipient LIKE '%{:08}'
               AND (sent_at >= '{since_text}' OR (state = 'sending' AND inflight_part IS NOT NULL))
             GROUP BY recipient",
            1 + i * 7919
        )
    };
    let mut count = Vec::new();
    for i in 0..50u32 {
        let to = format!("+86138{:08}", 1 + i * 7919);
        let t = Instant::now();
        s.recipient_sent_since(&to, None, since).await.unwrap();
        count.push(t.elapsed());
    }
    let mut timeout = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        s.expire_pending_delivery(cutoff).await.unwrap();
        timeout.push(t.elapsed());
    }
    let mut counts = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        s.counts().await.unwrap();
        counts.push(t.elapsed());
    }
    for (table, index) in [
        ("outbox", "outbox_state_category"),
        ("outbox", "outbox_sent_recipient"),
        ("outbox", "outbox_delivery_pending"),
        ("outbox_parts", "parts_pending"),
        ("outbox", "outbox_delivered"),
    ] {
        let on = if backend == "mysql" {
            format!(" ON {table}")
        } else {
            String::new()
        };
        s.execute_raw(&format!("DROP INDEX {index}{on}"))
            .await
            .unwrap();
    }
    let mut count_before = Vec::new();
    for i in 0..10u32 {
        let t = Instant::now();
        s.execute_raw(&old_count(i)).await.unwrap();
        count_before.push(t.elapsed());
    }
    let mut timeout_before = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        s.expire_pending_delivery(cutoff).await.unwrap();
        timeout_before.push(t.elapsed());
    }
    let mut counts_before = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        s.counts().await.unwrap();
        counts_before.push(t.elapsed());
    }
    History {
        counts: pct(&mut counts, 0.5),
        counts_before: pct(&mut counts_before, 0.5),
        count: pct(&mut count, 0.5),
        count_before: pct(&mut count_before, 0.5),
        timeout: pct(&mut timeout, 0.5),
        timeout_before: pct(&mut timeout_before, 0.5),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = if args.iter().any(|a| a == "quick") {
        100_000
    } else {
        1_000_000
    };
    let only: Vec<&str> = ["sqlite", "postgres", "mysql"]
        .into_iter()
        .filter(|b| args.iter().any(|a| a == b))
        .collect();
    let backends = if only.is_empty() {
        vec!["sqlite", "postgres", "mysql"]
    } else {
        only
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for b in backends {
        rt.block_on(run(b, n));
    }
}
