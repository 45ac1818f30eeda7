//! Wiring and supervision: the instance's identity and locks, the store, one
//! actor per configured modem (a `sim:` device starts a simulated modem
//! in-process), the recorder of modem events, the dispatcher, the status socket
//! and the metrics endpoint; and the ordered stop: no new claims, sends in
//! flight finish and are recorded, the modems close, the recorder writes what
//! it still holds.
//!
//! Before anything is dispatched, the rows a previous process with this
//! identity left `sending` are settled ([`Store::settle_predecessor`]): a
//! restart costs seconds, not a lease.
//!
//! Every essential task is supervised: one that ends or panics while the daemon
//! is not stopping makes [`Daemon::failed`] answer with the reason, and `smsgw
//! run` exits non-zero (systemd restarts it). Also what systemd is told: READY
//! once the modems have been initialised (or reported why not), a one-line
//! STATUS, and watchdog pings only while the dispatcher and the recorder beat.

use crate::config::Config;
use crate::control::{auth, server};
use crate::dispatch::clock::Clock;
use crate::dispatch::dispatcher::{Dispatcher, Reload};
use crate::dispatch::inbound::{Inbound, InboundRules};
use crate::dispatch::steer::Steering;
use crate::instance::{self, FileLock};
use crate::modem::{self, Fleet, ModemConfig, ModemEvent, ModemHandle, Secret};
use crate::sim::{self, SimHandle};
use crate::store::{InstanceLock, Store};
use anyhow::Context;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

/// Watches the essential tasks.
#[derive(Clone)]
struct Supervisor {
    stopping: Arc<AtomicBool>,
    /// Tasks allowed to end now (a modem removed by SIGHUP).
    expected: Arc<Mutex<HashSet<String>>>,
    fatal: watch::Sender<Option<String>>,
}

/// Turns true when a watched task has ended.
type Ended = watch::Receiver<bool>;

impl Supervisor {
    fn new() -> Supervisor {
        Supervisor {
            stopping: Arc::new(AtomicBool::new(false)),
            expected: Arc::new(Mutex::new(HashSet::new())),
            fatal: watch::channel(None).0,
        }
    }

    /// Watches `task`: its end (or `bad` on its result) while the daemon is not
    /// stopping is fatal.
    fn watch<T: Send + 'static>(
        &self,
        name: String,
        task: JoinHandle<T>,
        bad: impl FnOnce(T) -> Option<String> + Send + 'static,
    ) -> Ended {
        let (tx, rx) = watch::channel(false);
        let me = self.clone();
        tokio::spawn(async move {
            let why = match task.await {
                Ok(v) => bad(v).unwrap_or_else(|| "ended".into()),
                Err(e) if e.is_panic() => {
                    let p = e.into_panic();
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "(no message)".into());
                    format!("panicked: {msg}")
                }
                Err(_) => "was cancelled".into(),
            };
            let _ = tx.send(true);
            let expected = me
                .expected
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
            if me.stopping.load(Ordering::SeqCst) || expected {
                return;
            }
            error!(task = %name, reason = %why, "an essential task ended unexpectedly; the daemon stops");
            me.fatal.send_if_modified(|f| {
                if f.is_none() {
                    *f = Some(format!("{name} {why}"));
                    true
                } else {
                    false
                }
            });
        });
        rx
    }
}

async fn ended(mut e: Ended, within: Duration) {
    let _ = tokio::time::timeout(within, e.wait_for(|v| *v)).await;
}

/// A running daemon.
pub struct Daemon {
    pub store: Store,
    /// The modems now configured (SIGHUP may add or remove some).
    pub fleet: Fleet,
    /// Simulated modems started for `sim:` devices, by modem id.
    pub sims: HashMap<String, SimHandle>,
    /// This instance's identity (in leases).
    pub owner: String,
    /// Operator pauses, the heartbeats, usage per modem.
    pub steer: Arc<Steering>,
    /// The status socket's path, when it is enabled.
    pub socket: Option<PathBuf>,
    /// The Prometheus endpoint's address, when it is enabled.
    pub metrics: Option<std::net::SocketAddr>,
    /// The database's clock.
    pub clock: Clock,
    /// What settling the predecessor's rows did at start.
    pub settled: crate::store::Rescued,
    stop: watch::Sender<bool>,
    stop_inbound: watch::Sender<bool>,
    supervisor: Supervisor,
    dispatcher: Ended,
    inbound: Ended,
    control: Option<Ended>,
    reload: mpsc::Sender<Reload>,
    inbound_rules: watch::Sender<InboundRules>,
    /// The modem sections the running actors were started from.
    configured: Vec<crate::config::Modem>,
    events: mpsc::UnboundedSender<ModemEvent>,
    state_dir: PathBuf,
    _file_lock: FileLock,
}

/// The modem actor's configuration for a `[[modem]]` section.
pub fn modem_config(m: &crate::config::Modem) -> ModemConfig {
    let mut mc = ModemConfig::new(m.id.clone(), m.device.clone());
    mc.baud = m.baud;
    mc.flow_control = m.flow_control;
    mc.pin = m.pin.clone().map(Secret);
    mc.smsc = m.smsc.clone();
    mc.vendor = m.vendor.clone();
    mc.init = m.init.clone();
    mc.reset_command = m.reset_command.clone();
    mc.hang_up_calls = m.calls == crate::config::CallPolicy::HangUp;
    if let Some(t) = m.command_timeout_secs {
        mc.timeouts.command = Duration::from_secs(t.max(1));
    }
    if let Some(t) = m.send_timeout_secs {
        mc.timeouts.send_result = Duration::from_secs(t.max(1));
    }
    mc
}

/// Names, at start, a database whose settings lose committed writes at a
/// power cut: each such setting, its value, what it costs and the fix.
async fn log_durability(store: &Store) {
    match store.durability().await {
        Ok(d) if d.durable() => {
            info!(backend = d.backend, settings = %d.settings_line(), "the database keeps every commit through a power cut")
        }
        Ok(d) => {
            for r in &d.risks {
                warn!(
                    backend = d.backend,
                    setting = r.setting,
                    value = r.value,
                    fix = r.fix,
                    "the database loses committed writes at a power cut: {}",
                    r.loses
                );
            }
        }
        Err(e) => warn!(error = %e, "cannot read the database's durability settings"),
    }
}

impl Daemon {
    /// Connects, migrates if configured, settles what a predecessor left,
    /// starts the modems, the recorder and the dispatcher.
    pub async fn start(cfg: Config, owner: Option<String>) -> anyhow::Result<Daemon> {
        Daemon::start_from(cfg, owner, None).await
    }

    /// As [`Daemon::start`], naming the configuration file (shown by `smsgw
    /// status`, and part of the default identity).
    pub async fn start_from(
        cfg: Config,
        owner: Option<String>,
        config_file: Option<String>,
    ) -> anyhow::Result<Daemon> {
        let started = Instant::now();
        let started_at = chrono::Utc::now();
        let owner = owner.unwrap_or_else(|| instance::identity(&cfg, config_file.as_deref()));
        // The socket's groups are checked before anything starts: a typo must not
        // leave a daemon running that nobody can steer.
        let group = |key: &str, name: &Option<String>| -> anyhow::Result<Option<(String, u32)>> {
            match name {
                Some(g) => Ok(Some((
                    g.clone(),
                    auth::gid_of(g)
                        .with_context(|| format!("[status] {key} {g:?}: no such group"))?,
                ))),
                None => Ok(None),
            }
        };
        let read_group = group("read_group", &cfg.status.read_group)?;
        let operator_group = group("operator_group", &cfg.status.operator_group)?;
        let state_dir = instance::state_dir();
        let file_lock = instance::lock(&state_dir, &owner)?;
        let url = cfg.database.connect_url()?;
        let store = Store::connect_with(&url, cfg.database.sqlite_synchronous)
            .await
            .context("[database] url: cannot connect")?
            .with_numbering(cfg.numbers.clone());
        if cfg.database.migrate {
            store.migrate().await.context("migrating the database")?;
        }
        log_durability(&store).await;
        let db_lock = take_db_lock(&store, &owner).await?;
        let gammu_poll = cfg.compat.gammu_poll();
        let smsserver = match cfg.compat.smsserver_connect_url(&cfg.database)? {
            Some(u) => Some(
                crate::compat::smsserver::sync::open(&u)
                    .await
                    .context("[compat] smsserver")?,
            ),
            None => None,
        };
        let gammu = match cfg.compat.gammu_connect_url()? {
            Some(u) if cfg.compat.gammu => Some(
                crate::compat::gammu::sync::open(&u)
                    .await
                    .context("[compat] gammu_url")?,
            ),
            _ => None,
        };
        let clock = Clock::new(chrono::Duration::seconds(cfg.instance.clock_skew_secs));
        let before = clock.local();
        let db_now = store
            .db_now()
            .await
            .context("reading the database's clock")?;
        clock.observe(before, db_now, clock.local());
        // What the predecessor journaled while the database was away (parts the
        // network acknowledged, reports, incoming messages) is recorded first:
        // a part recorded is not one in doubt.
        let steer = Arc::new(Steering::default());
        let journal_path =
            state_dir.join(format!("inbound-{}.journal", instance::file_name(&owner)));
        let journal = crate::dispatch::journal::Shared::open(&journal_path)
            .with_context(|| format!("opening the journal {}", journal_path.display()))?;
        let rules = InboundRules::from_config(&cfg);
        let fleet = Fleet::new(Vec::new());
        let mut recorder = Inbound::new(
            store.clone(),
            fleet.clone(),
            rules.clone(),
            steer.clone(),
            journal.clone(),
            started_at,
        )
        .with_context(|| format!("opening the journal {}", journal_path.display()))?;
        recorder.drain().await;
        // Before anything is dispatched: the predecessor's rows.
        let settled = store
            .settle_predecessor(&owner, clock.db())
            .await
            .context("settling the rows a previous process left")?;
        if settled.retrying + settled.ambiguous + settled.sent > 0 {
            warn!(
                requeued = settled.retrying,
                ambiguous = settled.ambiguous,
                sent = settled.sent,
                "settled the rows the previous process with this identity left in flight"
            );
        }
        let supervisor = Supervisor::new();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let mut sims = HashMap::new();
        let mut modems = Vec::new();
        let mut handles = Vec::new();
        for m in &cfg.modems {
            let h = start_modem(m, &state_dir, &owner, &ev_tx, &mut sims, &supervisor).await?;
            handles.push(h.clone());
            modems.push((m.clone(), h));
        }
        let configured = cfg.modems.clone();
        for h in handles {
            fleet.add(h);
        }
        let status = cfg.status.clone();
        let metrics_cfg = cfg.metrics.clone();
        let database_url = crate::store::redact_url(&cfg.database.url);
        let hooks_cfg = cfg.hooks.clone();
        let dispatcher = Dispatcher::new(
            cfg,
            store.clone(),
            owner.clone(),
            modems,
            steer.clone(),
            clock.clone(),
            journal,
        )
        .await?;
        let (stop, stop_rx) = watch::channel(false);
        let (stop_inbound, stop_inbound_rx) = watch::channel(false);
        // After the commits they follow, at most once (src/hooks.rs).
        let (hooks, hooks_task) = crate::hooks::start(hooks_cfg, store.clone(), stop_rx.clone());
        let dispatcher = dispatcher.with_hooks(hooks.clone());
        recorder = recorder.with_hooks(hooks);
        if let Some(t) = hooks_task {
            supervisor.watch("the hooks".into(), t, |_| None);
        }
        let (socket, control) = if status.socket.is_empty() {
            (None, None)
        } else {
            let path = PathBuf::from(&status.socket);
            let listener = server::bind(&path).await?;
            let ctx = Arc::new(server::Context {
                store: store.clone(),
                modems: fleet.clone(),
                steer: steer.clone(),
                policy: auth::Policy {
                    own_uid: nix::unistd::getuid().as_raw(),
                    read_group,
                    operator_group,
                },
                owner: owner.clone(),
                config_file,
                started_at,
                started,
                database_url,
                slow: Default::default(),
            });
            let task = tokio::spawn(server::serve(listener, path.clone(), ctx, stop_rx.clone()));
            info!(socket = %path.display(), "status socket listening");
            (
                Some(path),
                Some(supervisor.watch("the status socket".into(), task, |_| None)),
            )
        };
        let metrics = if metrics_cfg.enabled {
            let sources = crate::metrics::Sources {
                store: store.clone(),
                modems: fleet.clone(),
                steer: steer.clone(),
            };
            let (addr, tasks) =
                crate::metrics::start(&metrics_cfg.listen, sources, stop_rx.clone())
                    .await
                    .with_context(|| format!("[metrics] listen {}", metrics_cfg.listen))?;
            for t in tasks {
                supervisor.watch("the metrics endpoint".into(), t, |_| None);
            }
            info!(%addr, "metrics at http://{addr}/metrics");
            Some(addr)
        } else {
            None
        };
        let (inbound_rules, rules_rx) = watch::channel(rules);
        let inbound = supervisor.watch(
            "the recorder of modem events".into(),
            tokio::spawn(recorder.run(ev_rx, stop_inbound_rx, rules_rx)),
            |_| None,
        );
        let (reload, reload_rx) = mpsc::channel(4);
        let dispatcher = supervisor.watch(
            "the dispatcher".into(),
            tokio::spawn(dispatcher.run(stop_rx.clone(), reload_rx)),
            |r: Result<(), String>| r.err(),
        );
        if let Some(db) = gammu {
            let (s, f) = (store.clone(), fleet.clone());
            let make =
                move || crate::compat::gammu::sync::Gammu::new(s.clone(), db.clone(), f.clone());
            supervisor.watch(
                "the gammu tables".into(),
                tokio::spawn(crate::compat::run(
                    store.clone(),
                    make,
                    gammu_poll,
                    stop_rx.clone(),
                )),
                |r: Result<(), String>| r.err(),
            );
            info!("serving gammu-smsd's tables");
        }
        if let Some(db) = smsserver {
            let s = store.clone();
            let make =
                move || crate::compat::smsserver::sync::SmsServer::new(s.clone(), db.clone());
            supervisor.watch(
                "the SMSServer tables".into(),
                tokio::spawn(crate::compat::run(
                    store.clone(),
                    make,
                    gammu_poll,
                    stop_rx.clone(),
                )),
                |r: Result<(), String>| r.err(),
            );
            info!("serving SMSServer's tables");
        }
        supervisor.watch(
            "the instance lock".into(),
            tokio::spawn(keep_db_lock(store.clone(), owner.clone(), db_lock, stop_rx)),
            |r: Result<(), String>| r.err(),
        );
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
            clock,
            settled,
            stop,
            stop_inbound,
            supervisor,
            dispatcher,
            inbound,
            control,
            reload,
            inbound_rules,
            _file_lock: file_lock,
        })
    }

    /// Answers, with the reason, when an essential task ended unexpectedly: the
    /// daemon can no longer do its job and must stop (systemd restarts it).
    pub async fn failed(&self) -> String {
        let mut rx = self.supervisor.fatal.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
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
    /// and the recorder have beaten within `WatchdogSec`: a wedged one gets the
    /// service restarted.
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
                    let (d, r) = (steer.since_beat(), steer.since_inbound_beat());
                    if d < w && r < w {
                        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                        stalled = false;
                    } else if !stalled {
                        stalled = true;
                        if d >= w {
                            warn!(silent_for = ?d, "the dispatcher has stopped making progress; withholding the watchdog ping");
                        } else {
                            warn!(silent_for = ?r, "the recorder of modem events has stopped making progress; withholding the watchdog ping");
                        }
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
                        m,
                        &self.state_dir,
                        &self.owner,
                        &self.events,
                        &mut self.sims,
                        &self.supervisor,
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
            self.supervisor
                .expected
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(modem_task(id));
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
        let _ = self.inbound_rules.send(InboundRules::from_config(&cfg));
        let _ = self
            .reload
            .send(Reload {
                cfg,
                added,
                removed,
            })
            .await;
    }

    /// Ordered stop: finish the sends in flight, close the modems, record what
    /// they still said.
    pub async fn shutdown(self) {
        self.supervisor.stopping.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        ended(self.dispatcher, Duration::from_secs(200)).await;
        if let Some(c) = self.control {
            ended(c, Duration::from_secs(10)).await;
        }
        for m in &self.fleet.list() {
            m.shutdown().await;
        }
        for s in self.sims.values() {
            s.control(sim::Control::Stop);
        }
        let _ = self.stop_inbound.send(true);
        ended(self.inbound, Duration::from_secs(30)).await;
        info!("smsgw stopped");
    }
}

fn modem_task(id: &str) -> String {
    format!("the actor of modem {id}")
}

/// Takes the database's instance lock, waiting a little for a killed
/// predecessor's session to go.
async fn take_db_lock(store: &Store, owner: &str) -> anyhow::Result<InstanceLock> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(l) = store
            .lock_instance(owner)
            .await
            .context("taking the instance lock in the database")?
        {
            return Ok(l);
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "another smsgw process runs as instance {owner:?} on this database (it holds the instance lock); \
                 stop it first, or give this one its own [instance] id"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Keeps the database lock: when its session is lost (a database restart) it
/// is taken again; if another process got it meanwhile, this one must stop.
async fn keep_db_lock(
    store: Store,
    owner: String,
    mut lock: InstanceLock,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(15)) => {}
        }
        if lock.alive().await {
            continue;
        }
        match store.lock_instance(&owner).await {
            Ok(Some(l)) => {
                info!("the database's instance lock was taken again after its session was lost");
                lock = l;
            }
            Ok(None) => {
                return Err(format!(
                    "lost: another process now holds the instance lock of {owner:?}"
                ))
            }
            Err(e) => warn!(error = %e, "cannot take the instance lock again yet"),
        }
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

/// Starts one modem's actor (and, for a `sim:` device, its simulator), watched
/// by the supervisor.
async fn start_modem(
    m: &crate::config::Modem,
    state_dir: &std::path::Path,
    owner: &str,
    events: &mpsc::UnboundedSender<ModemEvent>,
    sims: &mut HashMap<String, SimHandle>,
    supervisor: &Supervisor,
) -> anyhow::Result<ModemHandle> {
    let mut mc = modem_config(m);
    if let Some(spec) = m.device.strip_prefix("sim:") {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let link = state_dir.join(format!("sim-{}-{}", instance::file_name(owner), m.id));
        let sc = sim::spec::config(&m.id, spec).map_err(anyhow::Error::msg)?;
        let h = sim::spawn(sc, Some(link.clone()), None)
            .await
            .with_context(|| format!("[[modem]] {}: starting the simulator", m.id))?;
        mc.device = link.display().to_string();
        sims.insert(m.id.clone(), h);
    }
    let (handle, task) = modem::start(mc, events.clone());
    supervisor.watch(modem_task(&m.id), task, |_| None);
    Ok(handle)
}
