//! The task that owns one serial port. It is the only code that reads or writes
//! the port; everything it decides about bytes is the engine's.
//!
//! Life of a port: open (capped exponential backoff while it cannot be opened) ->
//! escape a stuck prompt -> probe `AT` -> `ATE0V1`, `AT+CMEE=1` -> identify ->
//! PIN -> PDU mode -> SMSC -> storage -> `AT+CNMI` (with fallbacks) -> signal and
//! registration -> read what is already stored -> serve requests and URCs, polling
//! health. A port that vanishes (read returns 0 or an error) or a modem that keeps
//! timing out ends the session; the actor reopens it, and the other modems never notice.

use super::call;
use super::vendor::{self, Vendor};
use super::{
    FlowControl, ModemConfig, ModemEvent, ModemHandle, ModemInfo, ModemState, ModemStatus,
    PartSent, Progress, ReportMode, Request, SendReport, StoredAt,
};
use crate::at::classify::{send_result, FailureClass, SendFailure, SendResult};
use crate::at::parse::{self, Registration};
use crate::at::{Command, Engine, EngineConfig, Event, Final, Outcome, SyncCause, Urc};
use crate::pdu::{self, Layout};
use chrono::Utc;
use std::collections::{HashSet, VecDeque};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_serial::{SerialPortBuilderExt, SerialStream};
use tracing::{debug, info, trace, warn};

/// Starts the actor for one modem.
pub fn spawn(cfg: ModemConfig, events: mpsc::UnboundedSender<ModemEvent>) -> ModemHandle {
    start(cfg, events).0
}

/// Starts the actor for one modem, with its task for a supervisor to watch.
/// Events go out on an unbounded channel: the actor never stops reading its
/// port because the rest of the daemon is slow (the recorder bounds what it
/// keeps in memory and journals the rest).
pub fn start(
    cfg: ModemConfig,
    events: mpsc::UnboundedSender<ModemEvent>,
) -> (ModemHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(32);
    let status = ModemStatus {
        id: cfg.id.clone(),
        device: cfg.device.clone(),
        state: ModemState::Initialising,
        reason: Some("starting".into()),
        since: Utc::now(),
        info: ModemInfo::default(),
        signal: None,
        registration: None,
        operator: None,
        smsc: None,
        storage: None,
        reports: None,
        parts_sent: 0,
        sends_failed: 0,
        desyncs: 0,
        last_error: None,
    };
    let (status_tx, status_rx) = watch::channel(status.clone());
    let handle = ModemHandle {
        id: cfg.id.clone(),
        tx,
        status: status_rx,
    };
    let actor = Actor {
        cfg,
        events,
        status_tx,
        status,
        rx,
    };
    let task = tokio::spawn(actor.run());
    (handle, task)
}

struct Actor {
    cfg: ModemConfig,
    events: mpsc::UnboundedSender<ModemEvent>,
    status_tx: watch::Sender<ModemStatus>,
    status: ModemStatus,
    rx: mpsc::Receiver<Request>,
}

/// Why a session ended.
enum End {
    Shutdown,
    /// The modem answers but cannot be used (PIN, SIM): stay degraded, retry slowly.
    Unusable(String),
    /// The port went away or failed.
    Lost(String),
    /// The modem stopped answering (or a reset was requested): reset and reopen.
    Reset(String),
    /// The modem announced a reboot: its settings are gone; reopen and
    /// initialise again at once.
    Rebooted(String),
}

/// The session cannot go on: the port is gone, or (`reset`) the modem stopped
/// answering and must be reset and reopened.
struct Lost(String, bool);

fn lost(reason: impl Into<String>) -> Lost {
    Lost(reason.into(), false)
}

/// One open port: the stream, the engine, and URCs waiting to be handled.
struct Session {
    port: SerialStream,
    engine: Engine,
    vendor: Vendor,
    urcs: VecDeque<Urc>,
    late_mrs: Vec<u8>,
    read_mem: String,
    report_mem: Option<String>,
    cmms: Option<bool>,
    buf: Vec<u8>,
    /// Consecutive timeouts after which the modem counts as unresponsive.
    max_timeouts: u32,
    /// Stored messages handed to the daemon and not deleted yet: a message that
    /// is both listed by AT+CMGL and announced by +CMTI is handed over once.
    handed_over: HashSet<(String, u32)>,
    /// `+CMGS` references read while synchronising the port just opened: a
    /// previous process's part on the wire.
    stale_mrs: Vec<u8>,
    /// The modem announced a reboot (the line): the session ends.
    rebooted: Option<String>,
    /// How delivery reports arrive in this session.
    reports: Option<ReportMode>,
    /// Boot lines came while the session started: the modem just powered up.
    saw_boot: bool,
    /// The call ringing now, if any.
    call: Option<call::Ringing>,
    /// An `AT+CPIN=` is on the wire, or timed out with its echo maybe still to
    /// come: the raw input trace shows only byte counts, since a read may split
    /// the echoed PIN where [`redact`] cannot see it. Cleared by the next answer.
    masking_rx: bool,
}

impl Session {
    /// The raw input at trace level (redacted: a modem with echo on repeats
    /// AT+CPIN="..."), or only its size while a PIN may be in it.
    fn trace_rx(&self, n: usize) {
        if self.masking_rx {
            trace!(bytes = n, "read (masked: the answer to AT+CPIN=)");
        } else {
            trace!(rx = %redact(&String::from_utf8_lossy(&self.buf[..n])).escape_debug(), "read");
        }
    }

    async fn flush(&mut self) -> Result<(), Lost> {
        while let Some(bytes) = self.engine.poll_transmit() {
            trace!(tx = %redact(&String::from_utf8_lossy(&bytes)).escape_debug(), "write");
            self.port
                .write_all(&bytes)
                .await
                .map_err(|e| lost(format!("write failed: {e}")))?;
            self.port
                .flush()
                .await
                .map_err(|e| lost(format!("write failed: {e}")))?;
            self.engine.handle_written(Instant::now().into_std());
        }
        Ok(())
    }

    /// Waits for input or the engine's deadline, once.
    async fn step(&mut self) -> Result<(), Lost> {
        let deadline = self.engine.poll_timeout().map(Instant::from_std);
        tokio::select! {
            r = self.port.read(&mut self.buf) => match r {
                // Ok(0) is how a vanished pty or USB device shows itself: never spin on it.
                Ok(0) => return Err(lost("device closed (unplugged?)")),
                Ok(n) => {
                    self.trace_rx(n);
                    self.engine.handle_input(Instant::now().into_std(), &self.buf[..n]);
                }
                Err(e) => return Err(lost(format!("read failed: {e}"))),
            },
            _ = sleep_until(deadline) => self.engine.handle_timeout(Instant::now().into_std()),
        }
        Ok(())
    }

    /// Waits for `fut` while still reading the port (URCs keep arriving; a port
    /// that vanishes meanwhile ends the session).
    async fn while_reading<T>(
        &mut self,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, Lost> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                v = &mut fut => return Ok(v),
                r = self.port.read(&mut self.buf) => match r {
                    Ok(0) => return Err(lost("device closed (unplugged?)")),
                    Ok(n) => {
                        self.trace_rx(n);
                        self.engine.handle_input(Instant::now().into_std(), &self.buf[..n]);
                        self.collect(None)?;
                    }
                    Err(e) => return Err(lost(format!("read failed: {e}"))),
                },
            }
        }
    }

    /// Waits until the engine has synchronised the line just opened; false when
    /// the modem answered none of `attempts` markers.
    async fn synchronised(&mut self, attempts: u32) -> Result<bool, Lost> {
        loop {
            self.flush().await?;
            self.collect(None)?;
            if !self.engine.is_synchronising() {
                return Ok(true);
            }
            if self.engine.consecutive_timeouts() >= attempts {
                return Ok(false);
            }
            self.step().await?;
        }
    }

    /// Runs one command to its outcome. URCs seen meanwhile are queued. A
    /// command other than a send whose answer was out of step is run once more
    /// after the engine resynchronised (asking again cannot do harm); a send is not.
    async fn exec(&mut self, cmd: Command) -> Result<Outcome, (Lost, Outcome)> {
        let again = cmd.pdu.is_none().then(|| cmd.clone());
        match self.exec_once(cmd).await {
            Ok(Outcome::Desync(_)) if again.is_some() => {
                self.exec_once(again.expect("checked")).await
            }
            r => r,
        }
    }

    async fn exec_once(&mut self, cmd: Command) -> Result<Outcome, (Lost, Outcome)> {
        debug!(cmd = %redact(&cmd.line), "command");
        if cmd.line.to_ascii_uppercase().contains("+CPIN=") {
            self.masking_rx = true;
        }
        let id = self.engine.submit(cmd);
        loop {
            let r = match self.flush().await {
                Ok(()) => self.collect(Some(id)),
                Err(l) => Err(l),
            };
            let r = match r {
                Ok(Some(o)) => {
                    if !matches!(o, Outcome::Timeout(..)) {
                        self.masking_rx = false;
                    }
                    return Ok(o);
                }
                Ok(None) if self.engine.consecutive_timeouts() >= self.max_timeouts => Err(Lost(
                    format!(
                        "no answer to {} commands in a row",
                        self.engine.consecutive_timeouts()
                    ),
                    true,
                )),
                Ok(None) => self.step().await,
                Err(l) => Err(l),
            };
            if let Err(lost) = r {
                self.engine.abort_all();
                let outcome = self
                    .collect(Some(id))
                    .ok()
                    .flatten()
                    .unwrap_or(Outcome::Aborted(crate::at::Stage::Queued));
                return Err((lost, outcome));
            }
        }
    }

    /// Drains engine events; returns the outcome of `id` if it is among them.
    fn collect(&mut self, id: Option<u64>) -> Result<Option<Outcome>, Lost> {
        let mut found = None;
        while let Some(ev) = self.engine.poll_event() {
            match ev {
                Event::Done { id: d, outcome } if Some(d) == id => found = Some(outcome),
                Event::Done { id: d, outcome } => {
                    debug!(id = d, outcome = %redact(&format!("{outcome:?}")), "stale command outcome")
                }
                Event::Urc(u) => {
                    if matches!(u, Urc::Ready { .. }) {
                        self.saw_boot = true;
                    }
                    self.urcs.push_back(u)
                }
                Event::LateReply { lines, .. } => {
                    if let Some(mr) = parse::cmgs(&lines) {
                        self.late_mrs.push(mr);
                    }
                    debug!(lines = ?lines.iter().map(|l| redact(l)).collect::<Vec<_>>(), "late reply after a timeout");
                }
                Event::StaleReply { cause, lines } => {
                    let mrs: Vec<u8> = lines
                        .iter()
                        .filter_map(|l| parse::cmgs(std::slice::from_ref(l)))
                        .collect();
                    if cause == SyncCause::Open {
                        if !mrs.is_empty() {
                            info!(?mrs, "a previous process's answer was waiting in the port");
                        }
                        self.stale_mrs.extend(mrs);
                    } else if !mrs.is_empty() {
                        // Out of step mid-session: whose send this answers cannot be known.
                        warn!(?mrs, ?cause, "+CMGS that no command can claim; not used");
                    }
                    debug!(?cause, lines = ?lines.iter().map(|l| redact(l)).collect::<Vec<_>>(), "stale input drained");
                }
                Event::Desync { id, line } => {
                    warn!(command = ?id, line = %redact(&line).escape_debug(), "a reply that cannot belong to the command in flight: resynchronising");
                }
                Event::Rebooted { line } => {
                    warn!(line = %redact(&line), "the modem announced a reboot");
                    self.rebooted = Some(line);
                }
                Event::Unsolicited(l) => debug!(line = %redact(&l), "unsolicited line ignored"),
                Event::Overflow { discarded } => {
                    warn!(discarded, "garbage on the line (wrong baud rate?)")
                }
                Event::Resynced => debug!("resynchronised"),
                Event::ResyncTimeout { attempts } => {
                    debug!(attempts, "no answer to resynchronisation")
                }
            }
        }
        Ok(found)
    }

    async fn ok(&mut self, cmd: Command) -> Result<Result<Vec<String>, String>, Lost> {
        let line = redact(&cmd.line);
        match self.exec(cmd).await {
            Ok(Outcome::Response(r)) if r.result.is_ok() => Ok(Ok(r.lines)),
            Ok(Outcome::Response(r)) => Ok(Err(format!("{line}: {}", r.result))),
            Ok(other) => Ok(Err(format!("{line}: {other:?}"))),
            Err((lost, _)) => Err(lost),
        }
    }
}

impl Actor {
    async fn run(mut self) {
        let mut backoff = self.cfg.reconnect_initial;
        loop {
            self.set_state(ModemState::Initialising, "opening the port");
            let end = match open(&self.cfg) {
                Err(e) => End::Lost(format!("cannot open {}: {e}", self.cfg.device)),
                Ok(port) => {
                    let mut s = Session {
                        port,
                        // Out of step until proven otherwise: whatever the port
                        // holds may be a previous process's answers.
                        engine: Engine::opened(
                            vendor::GENERIC.registry(),
                            EngineConfig {
                                resync_timeout: self.cfg.timeouts.resync,
                                ..EngineConfig::default()
                            },
                        ),
                        vendor: vendor::GENERIC,
                        urcs: VecDeque::new(),
                        late_mrs: Vec::new(),
                        read_mem: String::new(),
                        report_mem: None,
                        cmms: None,
                        buf: vec![0; 4096],
                        max_timeouts: self.cfg.max_consecutive_timeouts,
                        handed_over: HashSet::new(),
                        stale_mrs: Vec::new(),
                        rebooted: None,
                        reports: None,
                        saw_boot: false,
                        call: None,
                        masking_rx: false,
                    };
                    let end = self.session(&mut s).await;
                    if matches!(end, End::Reset(_)) {
                        if let Some(cmd) = self.cfg.reset_command.clone() {
                            // Best effort: the modem may not answer at all.
                            let _ = s
                                .exec(Command::new(cmd).timeout(self.cfg.timeouts.command))
                                .await;
                        }
                    }
                    if self.status.state == ModemState::Ready
                        || self.status.state == ModemState::Degraded
                    {
                        backoff = self.cfg.reconnect_initial;
                    }
                    end
                }
            };
            match end {
                End::Shutdown => {
                    self.set_state(ModemState::Stopped, "stopped");
                    return;
                }
                End::Lost(reason) => {
                    warn!(modem = %self.cfg.id, %reason, "modem disconnected");
                    self.set_state(ModemState::Disconnected, &reason);
                }
                End::Reset(reason) => {
                    warn!(modem = %self.cfg.id, %reason, "resetting modem");
                    self.set_state(ModemState::Resetting, &reason);
                }
                End::Rebooted(reason) => {
                    warn!(modem = %self.cfg.id, %reason, "modem restarted; initialising it again");
                    self.set_state(ModemState::Initialising, &reason);
                    backoff = self.cfg.reconnect_initial;
                    continue;
                }
                End::Unusable(reason) => {
                    warn!(modem = %self.cfg.id, %reason, "modem cannot be used");
                    self.set_state(ModemState::Degraded, &reason);
                    // A configuration problem does not fix itself quickly.
                    backoff = self.cfg.reconnect_max;
                }
            }
            if self.wait(backoff).await {
                self.set_state(ModemState::Stopped, "stopped");
                return;
            }
            backoff = (backoff * 2).min(self.cfg.reconnect_max);
        }
    }

    /// Waits out a backoff, answering requests (no modem: sends fail at once
    /// without harm). True on shutdown.
    async fn wait(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return false,
                req = self.rx.recv() => match req {
                    None | Some(Request::Shutdown) => return true,
                    Some(Request::Send { reply, .. }) => {
                        let _ = reply.send(SendReport::failed(FailureClass::Modem, self.not_ready()));
                    }
                    Some(Request::Delete { reply, .. }) => { let _ = reply.send(Err(self.not_ready())); }
                    Some(Request::Reset) => return false,
                }
            }
        }
    }

    fn not_ready(&self) -> String {
        format!(
            "modem {} is {:?}: {}",
            self.cfg.id,
            self.status.state,
            self.status.reason.as_deref().unwrap_or("")
        )
    }

    fn set_state(&mut self, state: ModemState, reason: &str) {
        if self.status.state != state {
            self.status.since = Utc::now();
            info!(modem = %self.cfg.id, ?state, reason, "modem state");
        }
        self.status.state = state;
        self.status.reason = (!reason.is_empty()).then(|| reason.to_string());
        self.publish();
    }

    fn publish(&self) {
        let _ = self.status_tx.send(self.status.clone());
    }

    async fn session(&mut self, s: &mut Session) -> End {
        match self.init(s).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return End::Unusable(reason),
            Err(l) => return l.end(),
        }
        // From here a boot line means the modem restarted under us (its late
        // readiness lines excepted, if it booted while we initialised it).
        s.engine.watch_reboots(true);
        if s.saw_boot {
            s.engine
                .expect_boot_lines((Instant::now() + Duration::from_secs(30)).into_std());
        }
        for mr in std::mem::take(&mut s.stale_mrs) {
            let _ = self.events.send(ModemEvent::StaleSubmit {
                modem: self.cfg.id.clone(),
                mr,
            });
        }
        let mut health = tokio::time::interval_at(
            Instant::now() + self.cfg.health_interval,
            self.cfg.health_interval,
        );
        loop {
            if let Err(l) = self.handle_urcs(s).await {
                return l.end();
            }
            if self.status.desyncs != s.engine.desyncs() {
                self.status.desyncs = s.engine.desyncs();
                metrics::counter!("smsgw_modem_desyncs_total", "modem" => self.cfg.id.clone())
                    .increment(1);
                self.publish();
            }
            if let Some(line) = s.rebooted.take() {
                return End::Rebooted(format!("the modem announced a restart ({line})"));
            }
            if s.engine.consecutive_timeouts() >= self.cfg.max_consecutive_timeouts {
                return End::Reset(format!(
                    "no answer to {} commands in a row",
                    s.engine.consecutive_timeouts()
                ));
            }
            let deadline = s.engine.poll_timeout().map(Instant::from_std);
            tokio::select! {
                req = self.rx.recv() => match req {
                    None | Some(Request::Shutdown) => return End::Shutdown,
                    Some(Request::Reset) => return End::Reset("reset requested".into()),
                    Some(Request::Send { parts, reply, progress }) => {
                        let (report, lost) = self.send(s, parts, progress.as_ref()).await;
                        let _ = reply.send(report);
                        if let Some(l) = lost { return l.end(); }
                    }
                    Some(Request::Delete { at, reply }) => match self.delete(s, &at).await {
                        Ok(r) => { let _ = reply.send(r); }
                        Err(l) => { let _ = reply.send(Err(l.0.clone())); return l.end(); }
                    },
                },
                r = s.port.read(&mut s.buf) => match r {
                    Ok(0) => return End::Lost("device closed (unplugged?)".into()),
                    Ok(n) => {
                        s.engine.handle_input(Instant::now().into_std(), &s.buf[..n]);
                        let _ = s.collect(None);
                    }
                    Err(e) => return End::Lost(format!("read failed: {e}")),
                },
                _ = sleep_until(deadline) => {
                    s.engine.handle_timeout(Instant::now().into_std());
                    let _ = s.collect(None);
                    if let Err(l) = s.flush().await { return l.end(); }
                }
                _ = health.tick() => {
                    if let Err(l) = self.poll_health(s).await { return l.end(); }
                }
            }
            for mr in std::mem::take(&mut s.late_mrs) {
                let _ = self.events.send(ModemEvent::LateSubmit {
                    modem: self.cfg.id.clone(),
                    mr,
                });
            }
        }
    }

    /// Probe, identify and initialise. `Ok(Err(reason))`: the modem answers but
    /// cannot be used (PIN, SIM): not a reason to hammer it.
    async fn init(&mut self, s: &mut Session) -> Result<Result<(), String>, Lost> {
        let t = self.cfg.timeouts;
        // The engine escapes a prompt left by a crashed send, drains what the port
        // holds (a previous process's answers, boot noise) and synchronises on
        // its marker before any command goes out.
        self.set_state(ModemState::Initialising, "probing");
        if !s.synchronised(5).await? {
            return Ok(Err(format!("no answer at {} baud", self.cfg.baud)));
        }
        // Echo off, verbose result codes, numeric errors.
        let _ = s
            .ok(Command::new("ATE0V1").numeric_finals().timeout(t.command))
            .await?;
        let _ = s.ok(Command::new("AT+CMEE=1").timeout(t.command)).await?;
        // Identify.
        let manufacturer = s
            .ok(Command::new("AT+CGMI").timeout(t.command))
            .await?
            .ok()
            .and_then(|l| parse::identity(&l));
        let mut info = ModemInfo {
            manufacturer,
            ..ModemInfo::default()
        };
        s.vendor = match &self.cfg.vendor {
            Some(v) => vendor::by_name(v).unwrap_or(vendor::GENERIC),
            None => vendor::detect(info.manufacturer.as_deref().unwrap_or("")),
        };
        s.engine.set_registry(s.vendor.registry());
        info.vendor = Some(s.vendor.name.to_string());
        info.model = s
            .ok(Command::new("AT+CGMM").timeout(t.command))
            .await?
            .ok()
            .and_then(|l| parse::identity(&l));
        info.revision = s
            .ok(Command::new("AT+CGMR").timeout(t.command))
            .await?
            .ok()
            .and_then(|l| parse::identity(&l));
        info.imei = s
            .ok(Command::new("AT+CGSN").timeout(t.command))
            .await?
            .ok()
            .and_then(|l| parse::digits(&l));
        self.status.info = info.clone();
        self.publish();
        for cmd in s.vendor.init {
            if let Err(e) = s.ok(Command::new(*cmd).timeout(t.command)).await? {
                debug!(modem = %self.cfg.id, error = %e, "vendor init command refused");
            }
        }
        // The caller of an incoming call (+CLIP after each RING).
        if let Err(e) = s.ok(Command::new("AT+CLIP=1").timeout(t.command)).await? {
            debug!(modem = %self.cfg.id, error = %e, "AT+CLIP=1 refused: callers are not known");
        }
        // SIM and PIN (waiting out "SIM busy" after power-up).
        match self.sim_ready(s).await? {
            Ok(()) => {}
            Err(reason) => return Ok(Err(reason)),
        }
        info.imsi = s
            .ok(Command::new("AT+CIMI").timeout(t.command))
            .await?
            .ok()
            .and_then(|l| parse::digits(&l));
        info.iccid = match s.ok(Command::new("AT+CCID").timeout(t.command)).await? {
            Ok(l) => parse::iccid(&l),
            Err(_) => s
                .ok(Command::new("AT^ICCID?").timeout(t.command))
                .await?
                .ok()
                .and_then(|l| parse::iccid(&l)),
        };
        self.status.info = info;
        // PDU mode is not optional.
        if let Err(e) = s.ok(Command::new("AT+CMGF=0").timeout(t.command)).await? {
            return Ok(Err(format!("modem refuses PDU mode ({e})")));
        }
        // SMSC: configured, or the SIM's.
        if let Some(smsc) = self.cfg.smsc.clone() {
            if let Err(e) = s
                .ok(Command::new(format!("AT+CSCA=\"{smsc}\",145")).timeout(t.command))
                .await?
            {
                warn!(modem = %self.cfg.id, error = %e, "could not set the SMSC");
            }
        }
        self.status.smsc = s
            .ok(Command::new("AT+CSCA?").timeout(t.command))
            .await?
            .ok()
            .and_then(|l| parse::csca(&l));
        // Storage: read from and store to the SIM.
        if let Ok(l) = s
            .ok(Command::new("AT+CPMS=\"SM\",\"SM\",\"SM\"").timeout(t.command))
            .await?
        {
            s.read_mem = "SM".into();
            self.status.storage = parse::cpms(&l).and_then(|st| st.first());
        }
        // New-message indications stored (+CMTI: survives a daemon crash); status
        // reports stored too (+CDSI) where the family's storage works, else routed.
        self.set_report_mode(s).await?;
        for cmd in self.cfg.init.clone() {
            if let Err(e) = s.ok(Command::new(cmd).timeout(t.command)).await? {
                warn!(modem = %self.cfg.id, error = %e, "configured init command failed");
            }
        }
        // Messages and reports already stored (also those left when smsgw died
        // before confirming them).
        self.read_stored(s).await?;
        // Last: readiness (from here a reboot line means a restart).
        self.poll_health(s).await?;
        Ok(Ok(()))
    }

    /// Chooses how status reports arrive (`<ds>`): stored first (read at every
    /// start, deleted only once recorded: nothing is lost while smsgw restarts),
    /// unless the vendor's profile says its storage is broken; the other as the
    /// fallback; then none.
    async fn set_report_mode(&mut self, s: &mut Session) -> Result<(), Lost> {
        let t = self.cfg.timeouts;
        let stored = ["AT+CNMI=2,1,0,2,0", "AT+CNMI=1,1,0,2,0"];
        let routed = ["AT+CNMI=2,1,0,1,0", "AT+CNMI=1,1,0,1,0"];
        let why_routed = s.vendor.route_reports;
        let order: Vec<&str> = if why_routed.is_some() {
            routed.iter().chain(stored.iter()).copied().collect()
        } else {
            stored.iter().chain(routed.iter()).copied().collect()
        };
        let mut mode = None;
        for cnmi in order {
            if s.ok(Command::new(cnmi).timeout(t.command)).await?.is_ok() {
                debug!(modem = %self.cfg.id, cnmi, "indications set");
                mode = Some(if cnmi.ends_with(",2,0") {
                    ReportMode::Stored {
                        mem: self.report_memory(s).await?,
                    }
                } else {
                    ReportMode::Routed {
                        why: why_routed
                            .unwrap_or("the modem refused stored reports (<ds>=2)")
                            .to_string(),
                    }
                });
                break;
            }
        }
        let mode = match mode {
            Some(m) => m,
            None => {
                // <ds>=0: incoming messages still announced, no reports.
                if s.ok(Command::new("AT+CNMI=2,1,0,0,0").timeout(t.command))
                    .await?
                    .is_err()
                {
                    warn!(modem = %self.cfg.id, "modem refuses every AT+CNMI: incoming messages are found by polling only");
                }
                ReportMode::None
            }
        };
        if matches!(mode, ReportMode::Routed { .. }) {
            info!(modem = %self.cfg.id, reports = %mode.describe(), "delivery reports");
        }
        s.reports = Some(mode.clone());
        self.status.reports = Some(mode);
        Ok(())
    }

    /// Leaves stored reports for routed ones (the report memory is full).
    async fn route_reports_now(&mut self, s: &mut Session) -> Result<(), Lost> {
        let t = self.cfg.timeouts.command;
        let mut mode = ReportMode::None;
        for cnmi in [
            "AT+CNMI=2,1,0,1,0",
            "AT+CNMI=1,1,0,1,0",
            "AT+CNMI=2,1,0,0,0",
        ] {
            if s.ok(Command::new(cnmi).timeout(t)).await?.is_ok() {
                if !cnmi.ends_with(",0,0") {
                    mode = ReportMode::Routed {
                        why: "the report memory was full".into(),
                    };
                }
                break;
            }
        }
        s.reports = Some(mode.clone());
        self.status.reports = Some(mode);
        self.publish();
        Ok(())
    }

    /// Where stored reports go: SR where the modem has it, else the message memory.
    async fn report_memory(&mut self, s: &mut Session) -> Result<String, Lost> {
        let sr = self.use_mem(s, "SR").await?;
        self.use_mem(s, "SM").await?;
        Ok(if sr { "SR" } else { "SM" }.into())
    }

    async fn sim_ready(&mut self, s: &mut Session) -> Result<Result<(), String>, Lost> {
        let t = self.cfg.timeouts;
        let until = Instant::now() + t.sim_busy;
        let mut pin_unanswered = false;
        loop {
            let mut cmd = Command::new("AT+CPIN?").timeout(t.command);
            if s.vendor.cpin_no_ok {
                cmd = cmd.final_on_prefix();
            }
            let outcome = s.exec(cmd).await.map_err(|(l, _)| l)?;
            let state = match &outcome {
                Outcome::Response(r) if r.result.is_ok() => {
                    parse::cpin(&r.lines).unwrap_or_default()
                }
                Outcome::Response(r) => match &r.result {
                    Final::Cme(c) if matches!(c.number(), Some(14 | 515)) => "BUSY".into(),
                    Final::Cme(c) if c.number() == Some(10) => {
                        return Ok(Err("SIM not inserted".into()))
                    }
                    other => return Ok(Err(format!("SIM check failed: {other}"))),
                },
                _ => "BUSY".into(),
            };
            match state.as_str() {
                "READY" => return Ok(Ok(())),
                "SIM PIN" => {
                    let Some(pin) = self.cfg.pin.clone() else {
                        return Ok(Err("SIM PIN required but no pin is configured".into()));
                    };
                    if pin_unanswered {
                        // It may have counted as a try: never a second one.
                        return Ok(Err("SIM PIN still required after AT+CPIN= went unanswered; not entered again (three wrong tries lock the SIM)".into()));
                    }
                    info!(modem = %self.cfg.id, "entering SIM PIN");
                    let cmd = Command::new(format!("AT+CPIN=\"{}\"", pin.0)).timeout(t.command);
                    match s.exec(cmd).await.map_err(|(l, _)| l)? {
                        Outcome::Response(r) if r.result.is_ok() => {}
                        Outcome::Response(r) => {
                            // Never retry a wrong PIN: three tries lock the SIM.
                            return Ok(Err(format!(
                                "SIM PIN refused (AT+CPIN=****: {}): check pin in the config",
                                redact(&r.result.to_string())
                            )));
                        }
                        _ => {
                            // A SIM slow to check it: ask what it made of it.
                            warn!(modem = %self.cfg.id, "no answer to AT+CPIN= in time; asking the SIM's state again (the PIN is not entered twice)");
                            pin_unanswered = true;
                            tokio::time::sleep(t.command).await;
                        }
                    }
                }
                "SIM PUK" => return Ok(Err("SIM is PUK-locked: unlock it in a phone".into())),
                "BUSY" if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
                "BUSY" => return Ok(Err("SIM stays busy".into())),
                other => return Ok(Err(format!("SIM state {other}"))),
            }
        }
    }

    async fn poll_health(&mut self, s: &mut Session) -> Result<(), Lost> {
        let t = self.cfg.timeouts.command;
        if let Ok(l) = s.ok(Command::new("AT+CSQ").timeout(t)).await? {
            self.status.signal = parse::csq(&l);
        }
        if let Ok(l) = s.ok(Command::new("AT+CREG?").timeout(t)).await? {
            self.status.registration = parse::creg(&l);
        }
        if let Ok(l) = s.ok(Command::new("AT+COPS?").timeout(t)).await? {
            self.status.operator = parse::cops(&l);
        }
        self.update_readiness();
        Ok(())
    }

    fn update_readiness(&mut self) {
        match self.status.registration {
            Some(r) if r.is_registered() => self.set_state(ModemState::Ready, ""),
            Some(r) => self.set_state(ModemState::Degraded, &format!("not registered ({r:?})")),
            // Some modems answer AT+CREG? with a bare OK: assume registered, sends will tell.
            None => self.set_state(ModemState::Ready, "registration unknown"),
        }
        if self.status.smsc.is_none()
            && self.cfg.smsc.is_none()
            && self.status.state == ModemState::Ready
        {
            self.set_state(
                ModemState::Degraded,
                "no SMSC on the SIM and none configured (smsc = ...)",
            );
        }
    }

    async fn use_mem(&mut self, s: &mut Session, mem: &str) -> Result<bool, Lost> {
        if s.read_mem == mem {
            return Ok(true);
        }
        let ok = s
            .ok(Command::new(format!("AT+CPMS=\"{mem}\"")).timeout(self.cfg.timeouts.command))
            .await?
            .is_ok();
        if ok {
            s.read_mem = mem.to_string();
        }
        Ok(ok)
    }

    async fn read_stored(&mut self, s: &mut Session) -> Result<(), Lost> {
        for mem in ["SM", "SR"] {
            if !self.use_mem(s, mem).await? {
                continue;
            }
            if mem == "SR" {
                s.report_mem = Some("SR".into());
            }
            let lines = match s
                .ok(Command::new("AT+CMGL=4").timeout(self.cfg.timeouts.command * 2))
                .await?
            {
                Ok(l) => l,
                Err(e) => {
                    debug!(modem = %self.cfg.id, error = %e, "cannot list stored messages");
                    continue;
                }
            };
            for stored in parse::cmgl(&lines) {
                let index = stored.index.unwrap_or(0);
                if s.handed_over.insert((mem.to_string(), index)) {
                    let at = StoredAt {
                        mem: mem.to_string(),
                        index,
                        pdu: stored.pdu.clone(),
                    };
                    self.emit_stored(&stored.pdu, stored.length, Some(at)).await;
                }
            }
        }
        self.use_mem(s, "SM").await?;
        Ok(())
    }

    /// Decodes a stored or routed PDU and hands it to the daemon.
    async fn emit_stored(&mut self, raw: &str, length: Option<usize>, stored: Option<StoredAt>) {
        let layout = length.map_or(Layout::Auto, Layout::TpduLen);
        let decoded = pdu::decode_hex(raw, layout);
        let modem = self.cfg.id.clone();
        let ev = match &decoded {
            Ok(d) => match d.tpdu {
                pdu::Tpdu::StatusReport(_) => ModemEvent::StatusReport {
                    modem,
                    pdu: Ok(d.clone()),
                    raw: raw.into(),
                    stored,
                },
                pdu::Tpdu::Deliver(_) => ModemEvent::Incoming {
                    modem,
                    pdu: Ok(d.clone()),
                    raw: raw.into(),
                    stored,
                },
                // A draft stored on the SIM by a phone: not ours to touch.
                pdu::Tpdu::Submit(_) => return,
            },
            Err(e) => {
                warn!(modem = %self.cfg.id, error = %e, "undecodable PDU from the modem");
                ModemEvent::Incoming {
                    modem,
                    pdu: Err(e.to_string()),
                    raw: raw.into(),
                    stored,
                }
            }
        };
        let _ = self.events.send(ev);
    }

    async fn handle_urcs(&mut self, s: &mut Session) -> Result<(), Lost> {
        while let Some(u) = s.urcs.pop_front() {
            match u {
                Urc::NewMessage { mem, index } | Urc::StatusReportStored { mem, index } => {
                    if s.handed_over.contains(&(mem.clone(), index))
                        || !self.use_mem(s, &mem).await?
                    {
                        continue;
                    }
                    match s
                        .ok(Command::new(format!("AT+CMGR={index}"))
                            .timeout(self.cfg.timeouts.command))
                        .await?
                    {
                        Ok(lines) => {
                            if let Some(st) = parse::cmgr(&lines) {
                                s.handed_over.insert((mem.clone(), index));
                                let at = StoredAt {
                                    mem: mem.clone(),
                                    index,
                                    pdu: st.pdu.clone(),
                                };
                                self.emit_stored(&st.pdu, st.length, Some(at)).await;
                            }
                        }
                        Err(e) => {
                            warn!(modem = %self.cfg.id, error = %e, "cannot read stored message")
                        }
                    }
                    self.use_mem(s, "SM").await?;
                }
                Urc::Message { length, pdu } | Urc::StatusReport { length, pdu } => {
                    self.emit_stored(&pdu, length, None).await;
                }
                Urc::Registration { stat } => {
                    self.status.registration = Some(Registration::from_stat(stat));
                    self.update_readiness();
                }
                Urc::SimState { state } => debug!(modem = %self.cfg.id, %state, "SIM state"),
                Urc::Ready { line } => {
                    debug!(modem = %self.cfg.id, line = %redact(&line), "modem ready marker")
                }
                Urc::Call { line } => self.on_call_line(s, &line).await?,
                Urc::Noise { line } => {
                    trace!(modem = %self.cfg.id, line = %redact(&line), "vendor noise")
                }
            }
        }
        Ok(())
    }

    /// One line of an incoming call: recorded once ([`call::on_line`]
    /// decides when), then hung up if configured (`AT+CHUP`, else `ATH`).
    async fn on_call_line(&mut self, s: &mut Session, line: &str) -> Result<(), Lost> {
        let Some(l) = parse::call_line(line) else {
            return Ok(());
        };
        let Some(new) = call::on_line(&mut s.call, l, Instant::now().into_std()) else {
            return Ok(());
        };
        let caller = new.caller;
        let mut hung_up = false;
        if self.cfg.hang_up_calls && !new.ended {
            let t = self.cfg.timeouts.command;
            hung_up = s.ok(Command::new("AT+CHUP").timeout(t)).await?.is_ok()
                || s.ok(Command::new("ATH").timeout(t)).await?.is_ok();
            if hung_up {
                call::hung_up(&mut s.call, Instant::now().into_std());
            } else {
                warn!(modem = %self.cfg.id, "an incoming call could not be hung up (AT+CHUP and ATH refused)");
            }
        }
        metrics::counter!("smsgw_calls_total", "modem" => self.cfg.id.clone()).increment(1);
        info!(modem = %self.cfg.id, caller = caller.as_deref().unwrap_or("(withheld)"), hung_up, "incoming call");
        let _ = self.events.send(ModemEvent::Call {
            modem: self.cfg.id.clone(),
            caller,
            at: Utc::now(),
            hung_up,
        });
        Ok(())
    }

    /// Deletes what the daemon recorded, only if the slot still holds it: a
    /// repeated delete (the record retried, the message read again in a later
    /// session) must not remove a newer message stored since at the same index.
    async fn delete(&mut self, s: &mut Session, at: &StoredAt) -> Result<Result<(), String>, Lost> {
        if !self.use_mem(s, &at.mem).await? {
            return Ok(Err(format!("memory {} not available", at.mem)));
        }
        let t = self.cfg.timeouts.command;
        let holds = match s
            .ok(Command::new(format!("AT+CMGR={}", at.index)).timeout(t))
            .await?
        {
            Ok(lines) => parse::cmgr(&lines).is_some_and(|st| same_pdu(&st.pdu, &at.pdu)),
            Err(_) => false,
        };
        let r = if holds {
            s.ok(Command::new(format!("AT+CMGD={}", at.index)).timeout(t))
                .await?
                .map(|_| ())
        } else {
            debug!(modem = %self.cfg.id, mem = %at.mem, index = at.index, "already deleted (or replaced by a newer message): not deleted again");
            Ok(())
        };
        if r.is_ok() {
            s.handed_over.remove(&(at.mem.clone(), at.index));
        }
        self.use_mem(s, "SM").await?;
        Ok(r)
    }

    async fn send(
        &mut self,
        s: &mut Session,
        parts: Vec<pdu::EncodedPart>,
        progress: Option<&tokio::sync::mpsc::UnboundedSender<Progress>>,
    ) -> (SendReport, Option<Lost>) {
        let mut report = SendReport {
            sent: Vec::new(),
            failure: None,
        };
        if self.status.state != ModemState::Ready {
            report.failure = Some(SendFailure {
                class: FailureClass::Modem,
                reason: self.not_ready(),
            });
            return (report, None);
        }
        let t = self.cfg.timeouts;
        if parts.len() > 1 && s.cmms != Some(false) {
            // Keep the radio link open between parts, where supported.
            match s.ok(Command::new("AT+CMMS=2").timeout(t.command)).await {
                Ok(r) => s.cmms = Some(r.is_ok()),
                Err(lost) => {
                    report.failure = Some(SendFailure {
                        class: FailureClass::Modem,
                        reason: lost.0.clone(),
                    });
                    return (report, Some(lost));
                }
            }
        }
        for part in parts {
            let cmd = Command::send_pdu(part.cmgs_len, part.pdu.clone())
                .prompt_timeout(t.send_prompt)
                .timeout(t.send_result);
            let (mut outcome, mut lost) = match s.exec(cmd.clone()).await {
                Ok(o) => (o, None),
                Err((lost, o)) => (o, Some(lost)),
            };
            if lost.is_none()
                && memory_full(&outcome)
                && matches!(s.reports, Some(ReportMode::Stored { .. }))
            {
                // The report memory is full (its reports wait for the database
                // before they are deleted): route reports for the rest of this
                // session so that sending goes on, and send the part again (the
                // modem refused it: it did not go).
                warn!(modem = %self.cfg.id, "report memory full: routing delivery reports until the modem is reopened");
                if let Err(l) = self.route_reports_now(s).await {
                    report.failure = Some(SendFailure {
                        class: FailureClass::Modem,
                        reason: l.0.clone(),
                    });
                    return (report, Some(l));
                }
                (outcome, lost) = match s.exec(cmd).await {
                    Ok(o) => (o, None),
                    Err((lost, o)) => (o, Some(lost)),
                };
            }
            match send_result(&outcome) {
                SendResult::Sent { mr } => {
                    self.status.parts_sent += 1;
                    let p = PartSent {
                        seq: part.seq,
                        mr,
                        at: Utc::now(),
                    };
                    report.sent.push(p.clone());
                    // The caller records each acknowledged part (and moves the
                    // row's marker to the next) before the next one goes: a crash
                    // mid-message leaves at most one part in doubt, never an
                    // acknowledged part unrecorded behind another.
                    if let (Some(tx), None) = (progress, &lost) {
                        let (go_on, answer) = tokio::sync::oneshot::channel();
                        let verdict = if tx.send(Progress { part: p, go_on }).is_err() {
                            Err("the dispatcher stopped listening".to_string())
                        } else {
                            match s.while_reading(answer).await {
                                Ok(Ok(v)) => v,
                                Ok(Err(_)) => Err("the dispatcher dropped the send".to_string()),
                                Err(l) => {
                                    lost = Some(l);
                                    Ok(())
                                }
                            }
                        };
                        if let Err(why) = verdict {
                            report.failure = Some(SendFailure {
                                class: FailureClass::Modem,
                                reason: format!("stopped after part {}: {why}", part.seq),
                            });
                        }
                    }
                }
                SendResult::Failed(f) => {
                    self.status.sends_failed += 1;
                    self.status.last_error = Some(f.reason.clone());
                    warn!(modem = %self.cfg.id, part = part.seq, class = ?f.class, reason = %f.reason, "send failed");
                    report.failure = Some(f);
                }
            }
            if lost.is_some() || report.failure.is_some() {
                self.publish();
                return (report, lost);
            }
        }
        self.publish();
        (report, None)
    }
}

impl Lost {
    fn end(self) -> End {
        if self.1 {
            End::Reset(self.0)
        } else {
            End::Lost(self.0)
        }
    }
}

/// `+CMS ERROR: 322` (memory full) for a send: the report memory is full.
fn memory_full(o: &Outcome) -> bool {
    matches!(o, Outcome::Response(r) if matches!(&r.result, Final::Cms(c) if c.number() == Some(322)))
}

/// Whether two reads of a slot hold the same PDU (SIM records may carry `FF`
/// padding after the TPDU, and hex case may differ).
fn same_pdu(a: &str, b: &str) -> bool {
    let trim = |s: &str| s.trim_end_matches(['F', 'f']).to_ascii_uppercase();
    trim(a) == trim(b)
}

fn open(cfg: &ModemConfig) -> Result<SerialStream, tokio_serial::Error> {
    // serialport names the settings; tokio-serial opens the port for tokio.
    let flow = match cfg.flow_control {
        FlowControl::None => serialport::FlowControl::None,
        FlowControl::Hardware => serialport::FlowControl::Hardware,
        FlowControl::Software => serialport::FlowControl::Software,
    };
    tokio_serial::new(&cfg.device, cfg.baud)
        .flow_control(flow)
        .timeout(Duration::from_secs(1))
        .open_native_async()
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Masks the SIM PIN in anything that may be logged: every `+CPIN=` argument up
/// to the end of its line.
pub fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.to_ascii_uppercase().find("+CPIN=") {
        out.push_str(&rest[..i]);
        out.push_str("+CPIN=****");
        let after = &rest[i + 6..];
        let end = after.find(['\r', '\n']).unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn pin_never_printed() {
        assert_eq!(redact("AT+CPIN=\"1234\""), "AT+CPIN=****");
        assert_eq!(redact("at+cpin=1234"), "at+CPIN=****");
        assert_eq!(redact("AT+CSQ"), "AT+CSQ");
        assert_eq!(
            redact("AT+CPIN=\"1234\"\r\r\nOK\r\nAT+CPIN=5678\r"),
            "AT+CPIN=****\r\r\nOK\r\nAT+CPIN=****\r"
        );
    }
}
