//! Wiring: the store, one actor per configured modem (a `sim:` device starts a
//! simulated modem in-process), and the dispatcher; and the ordered stop: no new
//! claims, sends in flight finish and are recorded, then the modems close.

use crate::config::Config;
use crate::dispatch::run::Dispatcher;
use crate::modem::{self, ModemHandle};
use crate::sim::{self, SimConfig, SimHandle};
use crate::store::Store;
use anyhow::Context;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::info;

/// A running daemon.
pub struct Daemon {
    pub store: Store,
    pub modems: Vec<ModemHandle>,
    /// Simulated modems started for `sim:` devices, by modem id.
    pub sims: HashMap<String, SimHandle>,
    pub owner: String,
    stop: watch::Sender<bool>,
    reload: mpsc::Sender<Config>,
    task: JoinHandle<()>,
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
        let owner = owner.unwrap_or_else(default_owner);
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
            let mut mc = cfg.modem_config(m);
            if let Some(spec) = m.device.strip_prefix("sim:") {
                std::fs::create_dir_all(&state_dir)
                    .with_context(|| format!("creating {}", state_dir.display()))?;
                let link = state_dir.join(format!("sim-{owner}-{}", m.id));
                let h = sim::spawn(sim_config(&m.id, spec)?, Some(link.clone()), None)
                    .await
                    .with_context(|| format!("[[modem]] {}: starting the simulator", m.id))?;
                mc.device = link.display().to_string();
                sims.insert(m.id.clone(), h);
            }
            let h = modem::spawn(mc, ev_tx.clone());
            handles.push(h.clone());
            modems.push((m.clone(), h));
        }
        let dispatcher = Dispatcher::new(cfg, store.clone(), owner.clone(), modems).await?;
        let (stop, stop_rx) = watch::channel(false);
        let (reload, reload_rx) = mpsc::channel(4);
        let task = tokio::spawn(dispatcher.run(ev_rx, stop_rx, reload_rx));
        info!(%owner, backend = store.backend(), modems = handles.len(), "smsgw started");
        Ok(Daemon {
            store,
            modems: handles,
            sims,
            owner,
            stop,
            reload,
            task,
        })
    }

    /// Applies a reloaded configuration (what can change safely; see `Dispatcher::reload`).
    pub async fn reload(&self, cfg: Config) {
        let _ = self.reload.send(cfg).await;
    }

    /// Ordered stop: finish the sends in flight, then close the modems.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        for m in &self.modems {
            m.shutdown().await;
        }
        for s in self.sims.values() {
            s.control(sim::Control::Stop);
        }
        info!("smsgw stopped");
    }
}
