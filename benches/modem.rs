//! Modem actor benchmark (a harness that prints figures; see docs/benchmarks.md).
//!
//! One modem actor, through tokio-serial on a real pty, against the simulator:
//! 1. zero network latency: what the daemon's own machinery (codec, engine, actor,
//!    pty) costs per part;
//! 2. a realistic latency: how much of the modem-bound limit one actor achieves
//!    (limit = parts x mean network time per part, the best a modem can do).
//!
//! Run: `cargo bench --bench modem` (add `-- quick` for a short run).

use smsgw::modem::{self, ModemConfig, ModemState};
use smsgw::pdu::{self, SubmitOptions};
use smsgw::sim::{self, profile, ReportOutcome, SimConfig};
use std::time::{Duration, Instant};

/// Returns the elapsed time, the parts sent, and the sum of the simulated network
/// times (the modem-bound limit: no daemon can be faster than the modem).
async fn run(
    latency: (Duration, Duration),
    messages: usize,
    text: &str,
) -> (Duration, usize, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("m");
    let mut cfg = SimConfig::new("bench", profile::by_name("generic").unwrap());
    cfg.latency = latency;
    cfg.report_outcome = ReportOutcome::Never;
    let sim = sim::spawn(cfg, Some(link.clone()), None).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let mut mc = ModemConfig::new("m", link.to_str().unwrap());
    mc.health_interval = Duration::from_secs(3600);
    let m = modem::spawn(mc, tx);
    let mut w = m.watch();
    while w.borrow_and_update().state != ModemState::Ready {
        w.changed().await.unwrap();
    }
    let opts = SubmitOptions::default();
    let start = Instant::now();
    let mut parts = 0;
    for i in 0..messages {
        let ps = pdu::encode_submit(&format!("+86138{i:08}"), text, &opts).unwrap();
        let rep = m.send(ps).await;
        assert!(rep.failure.is_none(), "{:?}", rep.failure);
        parts += rep.sent.len();
    }
    let elapsed = start.elapsed();
    let net = sim.submitted();
    assert_eq!(net.len(), parts);
    let limit = Duration::from_micros(net.iter().map(|s| s.latency_us).sum());
    m.shutdown().await;
    sim.control(sim::Control::Stop);
    (elapsed, parts, limit)
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let greeting = "尊敬的客户：中秋佳节将至，祝您和家人身体健康、阖家幸福、万事如意！";
    rt.block_on(async {
        let (n, runs) = if quick { (100, 3) } else { (500, 7) };
        let mut per_part = Vec::new();
        for _ in 0..runs {
            let (t, parts, _) = run((Duration::ZERO, Duration::ZERO), n, greeting).await;
            per_part.push(t / parts as u32);
        }
        per_part.sort();
        println!(
            "zero latency: {runs} runs of {n} parts: per part min {:.1?}, median {:.1?}, max {:.1?} (median {:.0} parts/s)",
            per_part[0],
            per_part[runs / 2],
            per_part[runs - 1],
            1.0 / per_part[runs / 2].as_secs_f64()
        );

        let (lo, hi) = (Duration::from_millis(400), Duration::from_millis(600));
        let n = if quick { 10 } else { 40 };
        let (t, parts, limit) = run((lo, hi), n, greeting).await;
        println!(
            "latency 400-600 ms: {parts} parts in {t:.2?}; modem-bound limit {limit:.2?}; utilisation {:.1}%; overhead {:.1?} per part",
            100.0 * limit.as_secs_f64() / t.as_secs_f64(),
            t.saturating_sub(limit) / parts as u32
        );
    });
}
