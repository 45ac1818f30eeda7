//! Wiring: the store, one actor per configured modem (a `sim:` device starts a
//! simulated modem in-process), and the dispatcher; and the ordered stop: no new
//! claims, sends in flight finish and are recorded, then the modems close.
//! Also what systemd is told: READY once the modems have been initialised (or
//! reported why not), a one-line STATUS, and watchdog pings only while the
//! dispatcher's loop is alive.

use crate::config::Config;
use crate::control::{auth, server};
use crate::dispatch::run::{Dispatcher, Reload};
use crate::dispatch::steer::Steering;
use crate::modem::{self, Fleet, ModemEvent, ModemHandle};
use crate::sim::{self, SimConfig, SimHandle};
use crate::store::Store;
use anyhow::Context;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// A running daemon.
pub struct Daemon {
    pub store: Store,
    /// The modems now configured (SIGHUP may add or remove some).
    pub fleet: Fleet,
    /// Simulated modems started for `sim:` devices, by modem id.
    pub sims: HashMap<String, SimHandle>,
    pub owner: String,
    /// Operator pauses, the dispatcher's heartbeat, usage per modem.
    pub steer: Arc<Steering>,
    /// The status socket's path, when it is enabled.
    pub socket: Option<PathBuf>,
    /// The Prometheus endpoint's address, when it is enabled.
    pub metrics: Option<std::net::SocketAddr>,
    stop: watch::Sender<bool>,
    control: Option<JoinHandle<()>>,
    reload: mpsc::Sender<Reload>,
    task: JoinHandle<()>,
    /// The modem sections the running actors were started from.
    configured: Vec<crate::config::Modem>,
    events: mpsc::Sender<ModemEvent>,
    state_dir: PathBuf,
}

/// `sim:PROFILE[:MIN-MAX]` -> the simulator's configuration (latency in ms).
pub fn sim_config(id: &str, spec: &str) -> anyhow::Result<SimConfig> {
    let mut it = spec.splitn(2, ':');
    let profile = it.next().unwrap_or("generic");
    let p = sim::profile::by_name(profile)
        .with_context(|| format!("unknown simulator profile {profile:?}"))?;
    let mut c = SimConfig::new(format!("{id}-sim"), p);
    if let Some(lat) = it.next() {
        let (a, b) = lat.split_once('-').unwrap_or((lat, lat));
        let ms = |v: &str| v.trim().parse::<u64>().map(Duration::from_millis);
        c.latency = (ms(a)?, ms(b)?);
    }
    c.report_delay = Duration::from_millis(800);
    c.seed = id
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    c.imei = format!("8675840{:08}", c.seed % 100_000_000);
    c.iccid = format!("898600{:014}", c.seed % 100_000_000_000_000);
    Ok(c)
}

fn default_owner() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "smsgw".into());
    format!("{}-{}", host.trim(), std::process::id())
}

impl Daemon {
    /// Connects, migrates if configured, starts the modems and the dispatcher.
    pub async fn start(cfg: Config, owner: Option<String>) -> anyhow::Result<Daemon> {
        Daemon::start_from(cfg, owner, None).await
    }

    /// As [`Daemon::start`], naming the configuration file (shown by `smsgw status`).
    pub async fn start_from(
        cfg: Config,
        owner: Option<String>,
        config_file: Option<String>,
    ) -> anyhow::Result<Daemon> {
        let started = Instant::now();
        let owner = owner.unwrap_or_else(default_owner);
        // The socket's groups are checked before anything starts: a typo must not
        // leave a daemon running that nobody can steer.
        let admin_group = match &cfg.status.admin_group {
            Some(g) => Some((
                g.clone(),
                auth::gid_of(g)
                    .with_context(|| format!("[status] admin_group {g:?}: no such group"))?,
            )),
            None => None,
        };
        let store = Store::connect(&cfg.database.url)
            .await
            .context("[database] url: cannot connect")?;
        if cfg.database.migrate {
            store.migrate().await.context("migrating the database")?;
        }
        let state_dir = std::env::var_os("STATE_DIRECTORY")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("smsgw"));
        let (ev_tx, ev_rx) = mpsc::channel(256);
        let mut sims = HashMap::new();
        let mut modems = Vec::new();
        let mut handles = Vec::new();
        for m in &cfg.modems {
            let h = start_modem(&cfg, m, &state_dir, &owner, &ev_tx, &mut sims).await?;
            handles.push(h.clone());
            modems.push((m.clone(), h));
        }
        let configured = cfg.modems.clone();
        let fleet = Fleet::new(handles);
        let steer = Arc::new(Steering::default());
        let status = cfg.status.clone();
        let metrics_cfg = cfg.metrics.clone();
        let database_url = crate::store::redact_url(&cfg.database.url);
        let dispatcher =
            Dispatcher::new(cfg, store.clone(), owner.clone(), modems, steer.clone()).await?;
        let (stop, stop_rx) = watch::channel(false);
        let (socket, control) = if status.socket.is_empty() {
            (None, None)
        } else {
            let path = PathBuf::from(&status.socket);
            let listener = server::bind(&path, status.group.as_deref()).await?;
            let ctx = Arc::new(server::Context {
                store: store.clone(),
                modems: fleet.clone(),
                steer: steer.clone(),
                policy: auth::Policy {
                    own_uid: nix::unistd::getuid().as_raw(),
                    admin_group,
                },
                owner: owner.clone(),
                config_file,
                started_at: chrono::Utc::now(),
                started,
                database_url,
            });
            let task = tokio::spawn(server::serve(listener, path.clone(), ctx, stop_rx.clone()));
            info!(socket = %path.display(), "status socket listening");
            (Some(path), Some(task))
        };
        let metrics = if metrics_cfg.enabled {
            let sources = crate::metrics::Sources {
                store: store.clone(),
                modems: fleet.clone(),
                steer: steer.clone(),
            };
            let addr = crate::metrics::start(&metrics_cfg.listen, sources, stop_rx.clone())
                .await
                .with_context(|| format!("[metrics] listen {}", metrics_cfg.listen))?;
            info!(%addr, "metrics at http://{addr}/metrics");
            Some(addr)
        } else {
            None
        };
        let (reload, reload_rx) = mpsc::channel(4);
        let task = tokio::spawn(dispatcher.run(ev_rx, stop_rx, reload_rx));
        info!(%owner, backend = store.backend(), modems = configured.len(), "smsgw started");
        Ok(Daemon {
            store,
            fleet,
            configured,
            events: ev_tx,
            state_dir,
            sims,
            owner,
            steer,
            socket,
            metrics,
            stop,
            control,
            reload,
            task,
        })
    }

    /// Waits until every modem has left `initialising` (ready, or a reason why
    /// not), at most `max`: then the daemon is ready in systemd's sense.
    pub async fn initialised(&self, max: Duration) -> bool {
        all_initialised(&self.fleet.list(), max).await
    }

    /// One line for systemd's STATUS= and the logs.
    pub fn status_line(&self) -> String {
        status_line(&self.fleet.list(), &self.steer)
    }

    /// Talks to systemd when started by it (`NOTIFY_SOCKET` set; a no-op otherwise):
    /// READY=1 once the modems are initialised (at most 90 s), STATUS= every 10 s,
    /// and WATCHDOG=1 at a third of `WatchdogSec` only while the dispatcher's loop
    /// has beaten within `WatchdogSec`: a wedged dispatcher gets the service restarted.
    pub fn spawn_systemd(&self) -> JoinHandle<()> {
        let fleet = self.fleet.clone();
        let steer = self.steer.clone();
        tokio::spawn(async move {
            if std::env::var_os("NOTIFY_SOCKET").is_none() {
                return;
            }
            let all = all_initialised(&fleet.list(), Duration::from_secs(90)).await;
            let line = status_line(&fleet.list(), &steer);
            if !all {
                warn!("some modems are still initialising; reporting ready anyway");
            }
            let _ = sd_notify::notify(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(&line),
            ]);
            info!(status = %line, "ready");
            let watchdog = sd_notify::watchdog_enabled();
            let tick = watchdog
                .map(|w| (w / 3).min(Duration::from_secs(10)))
                .unwrap_or(Duration::from_secs(10));
            let mut last_status = line;
            let mut last_status_at = Instant::now();
            let mut stalled = false;
            loop {
                tokio::time::sleep(tick).await;
                if let Some(w) = watchdog {
                    if steer.since_beat() < w {
                        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                        stalled = false;
                    } else if !stalled {
                        stalled = true;
                        warn!(silent_for = ?steer.since_beat(), "the dispatcher has stopped making progress; withholding the watchdog ping");
                    }
                }
                if last_status_at.elapsed() >= Duration::from_secs(10) {
                    let line = status_line(&fleet.list(), &steer);
                    if line != last_status {
                        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&line)]);
                        last_status = line;
                    }
                    last_status_at = Instant::now();
                }
            }
        })
    }

    /// The modems now configured, in order.
    pub fn modems(&self) -> Vec<ModemHandle> {
        self.fleet.list()
    }

    /// Applies a reloaded configuration (SIGHUP): limits, quiet hours, opt-out and
    /// sending policy (see `Dispatcher::reload`), and the modem list: a new
    /// `[[modem]]` starts, a removed one stops taking work, finishes its send in
    /// flight and closes. A modem whose port settings changed (device, baud, PIN...)
    /// keeps running as it was until a restart: reopening it under a send in flight
    /// could leave a message ambiguous.
    pub async fn reload(&mut self, cfg: Config) {
        let old: HashMap<&str, &crate::config::Modem> =
            self.configured.iter().map(|m| (m.id.as_str(), m)).collect();
        let mut added = Vec::new();
        let mut kept = Vec::new();
        for m in &cfg.modems {
            match old.get(m.id.as_str()) {
                Some(o) => {
                    let port_only = |x: &crate::config::Modem| crate::config::Modem {
                        group: None,
                        limits: None,
                        ..x.clone()
                    };
                    if port_only(o) != port_only(m) {
                        warn!(modem = %m.id, "reload: port settings changed; they apply after a restart");
                        kept.push(crate::config::Modem {
                            group: m.group.clone(),
                            limits: m.limits,
                            ..(*o).clone()
                        });
                    } else {
                        kept.push(m.clone());
                    }
                }
                None => {
                    match start_modem(
                        &cfg,
                        m,
                        &self.state_dir,
                        &self.owner,
                        &self.events,
                        &mut self.sims,
                    )
                    .await
                    {
                        Ok(h) => {
                            info!(modem = %m.id, device = %m.device, "reload: modem added");
                            self.fleet.add(h.clone());
                            added.push((m.clone(), h));
                            kept.push(m.clone());
                        }
                        Err(e) => {
                            warn!(modem = %m.id, error = %format!("{e:#}"), "reload: modem not added")
                        }
                    }
                }
            }
        }
        let removed: Vec<String> = self
            .configured
            .iter()
            .filter(|o| !cfg.modems.iter().any(|m| m.id == o.id))
            .map(|o| o.id.clone())
            .collect();
        for id in &removed {
            info!(modem = %id, "reload: modem removed (finishing its send in flight)");
            if let Some(h) = self.fleet.remove(id) {
                if let Some(sim) = self.sims.remove(id) {
                    // The simulator goes once its modem has closed.
                    let mut w = h.watch();
                    tokio::spawn(async move {
                        while w.borrow().state != crate::modem::ModemState::Stopped {
                            if w.changed().await.is_err() {
                                break;
                            }
                        }
                        sim.control(sim::Control::Stop);
                    });
                }
            }
        }
        self.configured = kept;
        let _ = self
            .reload
            .send(Reload {
                cfg,
                added,
                removed,
            })
            .await;
    }

    /// Ordered stop: finish the sends in flight, then close the modems.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Some(c) = self.control {
            let _ = c.await;
        }
        for m in &self.fleet.list() {
            m.shutdown().await;
        }
        for s in self.sims.values() {
            s.control(sim::Control::Stop);
        }
        info!("smsgw stopped");
    }
}

fn status_line(modems: &[ModemHandle], steer: &Steering) -> String {
    let ready = modems
        .iter()
        .filter(|m| m.status().state == crate::modem::ModemState::Ready)
        .count();
    let sent: u32 = modems.iter().map(|m| steer.usage(&m.id).sent_today).sum();
    let paused = if steer.all_paused() {
        "; sending PAUSED"
    } else {
        ""
    };
    format!(
        "{ready}/{} modems ready; {sent} parts sent today{paused}",
        modems.len()
    )
}

async fn all_initialised(modems: &[ModemHandle], max: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + max;
    for m in modems {
        let mut w = m.watch();
        loop {
            if w.borrow().state != crate::modem::ModemState::Initialising {
                break;
            }
            if tokio::time::timeout_at(deadline, w.changed())
                .await
                .is_err()
            {
                return false;
            }
        }
    }
    true
}

/// Starts one modem's actor (and, for a `sim:` device, its simulator).
async fn start_modem(
    cfg: &Config,
    m: &crate::config::Modem,
    state_dir: &std::path::Path,
    owner: &str,
    events: &mpsc::Sender<ModemEvent>,
    sims: &mut HashMap<String, SimHandle>,
) -> anyhow::Result<ModemHandle> {
    let mut mc = cfg.modem_config(m);
    if let Some(spec) = m.device.strip_prefix("sim:") {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let link = state_dir.join(format!("sim-{owner}-{}", m.id));
        let h = sim::spawn(sim_config(&m.id, spec)?, Some(link.clone()), None)
            .await
            .with_context(|| format!("[[modem]] {}: starting the simulator", m.id))?;
        mc.device = link.display().to_string();
        sims.insert(m.id.clone(), h);
    }
    Ok(modem::spawn(mc, events.clone()))
}
