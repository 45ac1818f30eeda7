//! Campaign benchmark (prints figures; see docs/benchmarks.md): the whole daemon
//! (SQLite store, dispatcher, modem actors, simulated modems on real ptys) sending a
//! greeting campaign over 1, 8 and 64 modems with a per-part network latency.
//! Reports throughput against the modem-bound limit (the sum of the simulated
//! network times divided by the number of modems), insert-to-first-send latency,
//! idle CPU, and resident memory.
//!
//! Run: `cargo bench --bench campaign` (`-- quick` for a smaller run, `-- 1:10000`
//! for chosen MODEMS:MESSAGES runs, `-- pickup [sqlite|postgres|mysql]` for
//! insert-to-send latency on an idle daemon on each backend, or those named).

// The power-cut harness's file system, here as a disk with slow syncs.
#[allow(dead_code)]
#[path = "../tests/it/lazyfs.rs"]
mod lazyfs;

use smsgw::config::{Config, Modem};
use smsgw::daemon::Daemon;
use std::time::{Duration, Instant};

fn cpu_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    kb / 1024.0
}

/// Waits until every modem of the daemon is ready.
async fn all_ready(d: &Daemon) {
    for m in &d.modems() {
        let mut w = m.watch();
        while w.borrow_and_update().state != smsgw::modem::ModemState::Ready {
            w.changed().await.unwrap();
        }
    }
}

/// Where the database and state live: this machine's disk, or a lazy disk
/// whose every fsync sleeps (`-- slowdisk MS`); and SQLite's sync level.
#[derive(Clone, Copy)]
struct Disk {
    fsync_ms: Option<u64>,
    sync: smsgw::store::SqliteSync,
}

async fn campaign(modems: usize, messages: usize, latency: (u64, u64), disk: Disk) {
    let tmp = tempfile::tempdir().unwrap();
    let mut lazy = None;
    let dir = match disk.fsync_ms {
        Some(ms) => {
            let at = tmp.path().join("disk");
            std::fs::create_dir_all(&at).unwrap();
            let fs = lazyfs::LazyFs::mount(&at).expect("the slow disk (root, /dev/fuse)");
            fs.set_fsync_delay(Duration::from_millis(ms));
            lazy = Some(fs);
            at
        }
        None => tmp.path().to_path_buf(),
    };
    // The state directory (the sim: links, the journal the hot path never
    // writes) stays on this disk; the database is on the chosen one.
    std::env::set_var("STATE_DIRECTORY", tmp.path());
    let mut cfg = Config::default();
    cfg.database.url = format!("sqlite://{}/bench.db", dir.display());
    cfg.database.sqlite_synchronous = disk.sync;
    cfg.quiet_hours.windows.clear();
    // The default poll (5 s): pickup must not wait for it.
    cfg.status.socket = String::new();
    cfg.log.level = "error".into();
    let profiles = ["generic", "huawei", "zte", "simcom", "quectel", "wavecom"];
    cfg.modems = (0..modems)
        .map(|i| {
            Modem::new(
                format!("m{i}"),
                format!(
                    "sim:{}:{}-{}",
                    profiles[i % profiles.len()],
                    latency.0,
                    latency.1
                ),
            )
        })
        .collect();
    let d = Daemon::start(cfg, Some(format!("bench-{modems}")))
        .await
        .unwrap();
    all_ready(&d).await;
    // Idle cost: nothing queued for 5 s.
    let (c0, t0) = (cpu_ticks(), Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = (cpu_ticks() - c0) as f64 / 100.0 / t0.elapsed().as_secs_f64() * 100.0;
    let rss_idle = rss_mib();
    // The campaign: inserted in one statement, as an import would.
    let body = "尊敬的客户：中秋佳节将至，祝您和家人身体健康、阖家幸福、万事如意！";
    let start = Instant::now();
    d.store
        .execute_raw(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {messages})
             INSERT INTO outbox (recipient, body, category) SELECT '+86138' || printf('%08d', i), '{body}', 'greeting' FROM n"
        ))
        .await
        .unwrap();
    let mut first_send = None;
    loop {
        let net: usize = d.sims.values().map(|s| s.submitted().len()).sum();
        if first_send.is_none() && net > 0 {
            first_send = Some(start.elapsed());
        }
        if net >= messages {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed();
    let rss_busy = rss_mib();
    let limit_us: u64 = d
        .sims
        .values()
        .flat_map(|s| s.submitted())
        .map(|s| s.latency_us)
        .sum();
    let limit = Duration::from_micros(limit_us / modems as u64);
    let fsyncs = lazy.as_ref().map(|f| f.fsyncs()).unwrap_or(0);
    println!(
        "[{} {}{}] {modems:>2} modems, {messages:>5} greetings, latency {}-{} ms: {elapsed:.1?}",
        match disk.sync {
            smsgw::store::SqliteSync::Full => "full",
            smsgw::store::SqliteSync::Extra => "extra",
            smsgw::store::SqliteSync::Normal => "normal",
        },
        disk.fsync_ms.map_or("this disk".to_string(), |ms| format!(
            "slow disk {ms} ms/fsync"
        )),
        if fsyncs > 0 {
            format!(", {fsyncs} fsyncs")
        } else {
            String::new()
        },
        latency.0,
        latency.1,
    );
    println!(
        "    {modems:>2} modems, {messages:>5} greetings, latency {}-{} ms: {elapsed:.1?} (modem-bound limit {limit:.1?}): {:.1}% of the limit, {:.0} msg/s | first send {:.0?} after insert | idle CPU {idle:.2}% of a core, RSS idle {rss_idle:.0} MiB, busy {rss_busy:.0} MiB",
        latency.0,
        latency.1,
        100.0 * limit.as_secs_f64() / elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64(),
        first_send.unwrap(),
    );
    d.shutdown().await;
    drop(lazy);
}

/// A fresh database for `backend`: its url, and how to drop it afterwards.
async fn fresh_url(backend: &str, dir: &std::path::Path) -> (String, Option<(String, String)>) {
    if backend == "sqlite" {
        return (format!("sqlite://{}/bench.db", dir.display()), None);
    }
    let admin_url = if backend == "postgres" {
        std::env::var("SMSGW_TEST_PG_URL")
            .unwrap_or("postgres://postgres@127.0.0.1:5432/test".into())
    } else {
        std::env::var("SMSGW_TEST_MYSQL_URL").unwrap_or("mysql://root@127.0.0.1:3306/test".into())
    };
    let admin = smsgw::store::Store::connect(&admin_url).await.unwrap();
    let db = format!("smsgw_pickup_{}", std::process::id());
    admin
        .execute_raw(&format!("DROP DATABASE IF EXISTS {db}"))
        .await
        .unwrap();
    admin
        .execute_raw(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let url = format!("{}/{db}", admin_url.rsplit_once('/').unwrap().0);
    let force = if backend == "postgres" {
        " WITH (FORCE)"
    } else {
        ""
    };
    (url, Some((admin_url, format!("DROP DATABASE {db}{force}"))))
}

/// Pickup on an idle daemon with the default configuration (`poll_secs = 5`):
/// another system inserts one message at a random moment (0.3–5.3 s after the
/// previous one was sent, so that the daemon is idle, waiting), 50 times; each is
/// timed from just before the INSERT to the simulated modem receiving its
/// `AT+CMGS` PDU (the simulator's record, less the network time it drew).
/// Also the idle CPU of the whole process with `modems` modems.
async fn pickup(backend: &str, modems: usize) {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("STATE_DIRECTORY", dir.path());
    let (url, drop_db) = fresh_url(backend, dir.path()).await;
    let mut cfg = Config::default();
    cfg.database.url = url;
    cfg.quiet_hours.windows.clear();
    cfg.status.socket = String::new();
    cfg.log.level = "error".into();
    cfg.modems = (0..modems)
        .map(|i| Modem::new(format!("m{i}"), "sim:generic:20-20".to_string()))
        .collect();
    let d = Daemon::start(cfg, Some(format!("pickup-{backend}")))
        .await
        .unwrap();
    all_ready(&d).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (c0, t0) = (cpu_ticks(), Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = (cpu_ticks() - c0) as f64 / 100.0 / t0.elapsed().as_secs_f64() * 100.0;
    let mut seed = 0x5eed_u64;
    let mut lat = Vec::new();
    for i in 0..50 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(300 + (seed >> 33) % 5000)).await;
        let before: usize = d.sims.values().map(|s| s.submitted().len()).sum();
        let at = chrono::Utc::now();
        d.store
            .execute_raw(&format!(
                "INSERT INTO outbox (recipient, body, category) VALUES ('+8613800{i:06}', '您好，请到 3 号窗口', 'reminder')"
            ))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let got = loop {
            let all: Vec<_> = d.sims.values().flat_map(|s| s.submitted()).collect();
            if all.len() > before {
                break all
                    .into_iter()
                    .filter(|s| s.text.contains("3 号窗口") && s.to.ends_with(&format!("{i:06}")))
                    .map(|s| s.time - chrono::Duration::microseconds(s.latency_us as i64))
                    .next();
            }
            assert!(Instant::now() < deadline, "message {i} never sent");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let got = got.expect("the submitted part is the inserted message");
        lat.push(((got - at).num_microseconds().unwrap().max(0) as f64) / 1000.0);
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
    println!(
        "pickup {backend:8} {modems} modems, default config: insert to AT+CMGS median {:.0} ms, p99 {:.0} ms, max {:.0} ms | idle CPU {idle:.2}% of a core",
        p(0.5),
        p(0.99),
        p(1.0)
    );
    d.shutdown().await;
    if let Some((admin, sql)) = drop_db {
        let a = smsgw::store::Store::connect(&admin).await.unwrap();
        let _ = a.execute_raw(&sql).await;
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    if std::env::args().any(|a| a == "pickup") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // `-- pickup sqlite` (or postgres, mysql) measures only those.
        let named: Vec<String> = std::env::args()
            .filter(|a| ["sqlite", "postgres", "mysql"].contains(&a.as_str()))
            .collect();
        for backend in ["sqlite", "postgres", "mysql"] {
            if named.is_empty() || named.iter().any(|n| n == backend) {
                rt.block_on(pickup(backend, 64));
            }
        }
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `-- MODEMS:MESSAGES[:MIN-MAX] ...` picks runs, e.g. `-- 1:10000` (35
    // minutes) or `-- 64:1480:1000-1000` (each part answered in 1 s).
    let picked: Vec<(usize, usize, (u64, u64))> = std::env::args()
        .filter_map(|a| {
            let mut f = a.split(':');
            let m = f.next()?.parse().ok()?;
            let n = f.next()?.parse().ok()?;
            let lat = match f.next() {
                Some(l) => {
                    let (lo, hi) = l.split_once('-')?;
                    (lo.parse().ok()?, hi.parse().ok()?)
                }
                None => (100, 300),
            };
            Some((m, n, lat))
        })
        .collect();
    let runs: Vec<(usize, usize, (u64, u64))> = if !picked.is_empty() {
        picked
    } else if quick {
        vec![
            (1, 50, (100, 300)),
            (8, 400, (100, 300)),
            (64, 2000, (100, 300)),
        ]
    } else {
        vec![
            (1, 1000, (100, 300)),
            (8, 10_000, (100, 300)),
            (64, 10_000, (100, 300)),
        ]
    };
    // `-- slowdisk MS`: every run on a lazy disk whose fsyncs take MS ms.
    // `-- compare`: each run with synchronous NORMAL (the code before) and
    // FULL (now), in the same process.
    let args: Vec<String> = std::env::args().collect();
    let fsync_ms = args
        .iter()
        .position(|a| a == "slowdisk")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok());
    let syncs: &[smsgw::store::SqliteSync] = if args.iter().any(|a| a == "compare") {
        &[
            smsgw::store::SqliteSync::Normal,
            smsgw::store::SqliteSync::Full,
        ]
    } else {
        &[smsgw::store::SqliteSync::Full]
    };
    for (modems, messages, latency) in runs {
        for &sync in syncs {
            rt.block_on(campaign(modems, messages, latency, Disk { fsync_ms, sync }));
        }
    }
}
