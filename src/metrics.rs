//! The optional Prometheus endpoint. The dispatcher counts with the `metrics`
//! macros wherever outcomes happen (no-ops while no recorder is installed); this
//! module installs the recorder, refreshes the gauges that are states rather than
//! events (modem state and signal, queue depth), and serves `GET /metrics` over a
//! deliberately tiny HTTP/1.0 responder (no HTTP stack for one read-only page).
//!
//! Names (all prefixed `smsgw_`):
//! - `parts_sent_total{modem}`, `send_failures_total{modem,class}` (counters)
//! - `messages_total{outcome}`: sent, retry, failed, rejected, expired, suppressed, held, ambiguous
//! - `delivery_reports_total{status}`, `incoming_messages_total{modem}`
//! - `send_duration_seconds{modem}` (histogram: one message through one modem)
//! - `queue_wait_seconds` (histogram: from due to handed to a modem)
//! - `modem_up{modem}` (1 ready), `modem_state{modem,state}` (1 for the current state),
//!   `modem_signal_dbm{modem}`, `modem_sent_today{modem}`
//! - `queue_messages{state}` (from the database, every 15 s)
//! - `dispatcher_heartbeat_age_seconds`, `recorder_heartbeat_age_seconds`: how
//!   long since the dispatcher's loop and the recorder of modem events last made
//!   progress (read at every scrape: a stuck dispatcher shows, whatever else works)
//! - `modem_desyncs_total{modem}`: replies out of step with their command

use crate::dispatch::steer::Steering;
use crate::modem::{Fleet, ModemState};
use crate::store::Store;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

/// Seconds; a part takes 3-15 s on real networks, a multipart message longer.
const SEND_BUCKETS: [f64; 10] = [0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 40.0, 120.0];

/// Installs the process-wide recorder (once; a second daemon in the same process,
/// as in tests, shares it).
fn recorder() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let rec = PrometheusBuilder::new()
                .set_buckets(&SEND_BUCKETS)
                .expect("non-empty buckets")
                .build_recorder();
            let handle = rec.handle();
            if metrics::set_global_recorder(rec).is_err() {
                warn!("a metrics recorder was already installed");
            }
            handle
        })
        .clone()
}

/// What the gauges are read from.
pub struct Sources {
    pub store: Store,
    pub modems: Fleet,
    pub steer: Arc<Steering>,
}

/// Binds `listen` and serves until `stop`; returns the bound address and the
/// two tasks (refreshing the gauges, serving), for the supervisor.
pub async fn start(
    listen: &str,
    sources: Sources,
    stop: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, Vec<tokio::task::JoinHandle<()>>)> {
    let handle = recorder();
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let steer = sources.steer.clone();
    let tasks = vec![
        tokio::spawn(refresh(sources, handle.clone(), stop.clone())),
        tokio::spawn(serve(listener, handle, steer, stop)),
    ];
    Ok((addr, tasks))
}

async fn refresh(src: Sources, handle: PrometheusHandle, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        for m in &src.modems.list() {
            let s = m.status();
            let id = m.id.clone();
            let up = f64::from(u8::from(s.state == ModemState::Ready));
            metrics::gauge!("smsgw_modem_up", "modem" => id.clone()).set(up);
            // One series per state, 1 for the current one (the usual enum gauge).
            for st in [
                ModemState::Initialising,
                ModemState::Ready,
                ModemState::Degraded,
                ModemState::Resetting,
                ModemState::Disconnected,
                ModemState::Stopped,
            ] {
                let name = serde_json::to_value(st)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                metrics::gauge!("smsgw_modem_state", "modem" => id.clone(), "state" => name)
                    .set(f64::from(u8::from(s.state == st)));
            }
            if let Some(d) = s.signal.as_ref().and_then(|x| x.dbm()) {
                metrics::gauge!("smsgw_modem_signal_dbm", "modem" => id.clone()).set(f64::from(d));
            }
            let u = src.steer.usage(&id);
            metrics::gauge!("smsgw_modem_sent_today", "modem" => id).set(f64::from(u.sent_today));
        }
        if n.is_multiple_of(3) {
            match tokio::time::timeout(Duration::from_secs(5), src.store.counts())
                .await
                .unwrap_or(Err(crate::store::StoreError::Time(
                    "no answer in 5 s".into(),
                ))) {
                Ok(rows) => {
                    let mut per = std::collections::BTreeMap::<String, i64>::new();
                    for st in crate::store::State::ALL {
                        per.insert(st.as_str().into(), 0);
                    }
                    for (state, _, c) in rows {
                        *per.entry(state).or_default() += c;
                    }
                    for (state, c) in per {
                        metrics::gauge!("smsgw_queue_messages", "state" => state).set(c as f64);
                    }
                }
                Err(e) => debug!(error = %e, "queue depth not refreshed"),
            }
        }
        n += 1;
        handle.run_upkeep();
    }
}

/// Scrapes served at once (Prometheus needs one); more are closed at connect.
const MAX_SCRAPERS: usize = 8;

async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    steer: Arc<Steering>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPERS));
    loop {
        let (mut s, _) = tokio::select! {
            _ = stop.changed() => return,
            a = listener.accept() => match a {
                Ok(x) => x,
                Err(_) => { tokio::time::sleep(Duration::from_millis(100)).await; continue; }
            },
        };
        // Beyond the cap a connection is closed at once: a flood of idle
        // connections costs the daemon no descriptor it needs elsewhere.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(s);
            continue;
        };
        let handle = handle.clone();
        let steer = steer.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // The request head only: method and path decide; a slow or huge client
            // is cut off.
            let mut buf = vec![0u8; 2048];
            let mut len = 0;
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while len < buf.len() {
                    let n = s.read(&mut buf[len..]).await?;
                    if n == 0 {
                        break;
                    }
                    len += n;
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n")
                        || buf[..len].windows(2).any(|w| w == b"\n\n")
                    {
                        break;
                    }
                }
                std::io::Result::Ok(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let first = head.lines().next().unwrap_or("");
            let (status, ctype, body) = match response_for(first) {
                Route::Metrics => {
                    metrics::gauge!("smsgw_dispatcher_heartbeat_age_seconds")
                        .set(steer.since_beat().as_secs_f64());
                    metrics::gauge!("smsgw_recorder_heartbeat_age_seconds")
                        .set(steer.since_inbound_beat().as_secs_f64());
                    ("200 OK", "text/plain; version=0.0.4", handle.render())
                }
                Route::NotFound => (
                    "404 Not Found",
                    "text/plain",
                    "smsgw serves /metrics only\n".to_string(),
                ),
                Route::BadMethod => (
                    "405 Method Not Allowed",
                    "text/plain",
                    "GET only\n".to_string(),
                ),
            };
            let out = format!(
                "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                let _ = s.write_all(out.as_bytes()).await;
                let _ = s.shutdown().await;
            })
            .await;
        });
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    BadMethod,
}

/// Pure routing of a request line.
fn response_for(request_line: &str) -> Route {
    let mut it = request_line.split_whitespace();
    let (method, path) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return Route::BadMethod;
    }
    match path.split('?').next() {
        Some("/metrics") => Route::Metrics,
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(response_for("GET /metrics HTTP/1.1"), Route::Metrics);
        assert_eq!(response_for("GET /metrics?x=1 HTTP/1.1"), Route::Metrics);
        assert_eq!(response_for("GET / HTTP/1.1"), Route::NotFound);
        assert_eq!(response_for("POST /metrics HTTP/1.1"), Route::BadMethod);
        assert_eq!(response_for(""), Route::BadMethod);
    }
}
