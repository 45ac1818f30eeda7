//! Campaign benchmark (prints figures; see docs/benchmarks.md): the whole daemon
//! (SQLite store, dispatcher, modem actors, simulated modems on real ptys) sending a
//! greeting campaign over 1, 8 and 64 modems with a per-part network latency.
//! Reports throughput against the modem-bound limit (the sum of the simulated
//! network times divided by the number of modems), insert-to-first-send latency,
//! idle CPU, and resident memory.
//!
//! Run: `cargo bench --bench campaign` (`-- quick` for a smaller run, `-- 1:10000`
//! for chosen MODEMS:MESSAGES runs).

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

async fn campaign(modems: usize, messages: usize, latency: (u64, u64)) {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("STATE_DIRECTORY", dir.path());
    let mut cfg = Config::default();
    cfg.database.url = format!("sqlite://{}/bench.db", dir.path().display());
    cfg.quiet_hours.windows.clear();
    cfg.sending.poll_secs = 1;
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
    for m in &d.modems() {
        let mut w = m.watch();
        while w.borrow_and_update().state != smsgw::modem::ModemState::Ready {
            w.changed().await.unwrap();
        }
    }
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
    println!(
        "{modems:>2} modems, {messages:>5} greetings, latency {}-{} ms: {elapsed:.1?} (modem-bound limit {limit:.1?}): {:.1}% of the limit, {:.0} msg/s | first send {:.0?} after insert | idle CPU {idle:.2}% of a core, RSS idle {rss_idle:.0} MiB, busy {rss_busy:.0} MiB",
        latency.0,
        latency.1,
        100.0 * limit.as_secs_f64() / elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64(),
        first_send.unwrap(),
    );
    d.shutdown().await;
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `-- MODEMS:MESSAGES ...` picks runs, e.g. `-- 1:10000` (35 minutes).
    let picked: Vec<(usize, usize)> = std::env::args()
        .filter_map(|a| {
            let (m, n) = a.split_once(':')?;
            Some((m.parse().ok()?, n.parse().ok()?))
        })
        .collect();
    let runs: &[(usize, usize)] = if !picked.is_empty() {
        &picked
    } else if quick {
        &[(1, 50), (8, 400), (64, 2000)]
    } else {
        &[(1, 1000), (8, 10_000), (64, 10_000)]
    };
    for &(modems, messages) in runs {
        rt.block_on(campaign(modems, messages, (100, 300)));
    }
}
