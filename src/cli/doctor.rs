//! `smsgw doctor --device PATH`: for a technician plugging in a new modem. Runs the
//! daemon's own modem layer against the port (so it sees exactly what the daemon
//! would), then explains in plain words what is wrong and what to do. Needs no
//! daemon and no database; the port must not be in use by a running daemon.
//!
//! `smsgw doctor --config FILE` (or `--database URL`) checks the database
//! instead: whether its settings keep every commit through a power cut
//! (`store::durability`), each one that does not named with its fix.

use crate::modem::{self, ModemConfig, ModemState, ModemStatus, Secret};
use clap::Args;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The serial port (prefer /dev/serial/by-id/...).
    #[arg(long, required_unless_present_any = ["database", "config"])]
    pub device: Option<String>,
    /// Check this database's durability settings (a url without a password;
    /// for one with a password, use --config).
    #[arg(long, conflicts_with = "config")]
    pub database: Option<String>,
    /// Check the database of this configuration file ([database] url,
    /// password_file, sqlite_synchronous).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Read the SIM PIN from the first line of standard input (never printed).
    /// Or set SMSGW_DOCTOR_PIN. Never on the command line: every local user
    /// can read a command line (ps).
    #[arg(long)]
    pub pin_stdin: bool,
    /// Refused: a PIN on the command line is visible to every local user.
    #[arg(long, hide = true, value_name = "PIN")]
    pub pin: Option<String>,
    /// Seconds to wait for the modem to initialise.
    #[arg(long, default_value_t = 45)]
    pub timeout: u64,
    /// Print the modem's status as JSON after the findings.
    #[arg(long)]
    pub json: bool,
}

/// One finding: a problem blocks sending, a warning may, ok is informational.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Ok(String),
    Warning(String),
    Problem(String),
}

/// Pure: what a modem's status means for a technician.
pub fn diagnose(s: &ModemStatus, device: &str, baud: u32) -> Vec<Finding> {
    use Finding::*;
    let mut f = Vec::new();
    let reason = s.reason.clone().unwrap_or_default();
    match s.state {
        ModemState::Disconnected | ModemState::Initialising if s.info.manufacturer.is_none() => {
            if reason.contains("no answer") || s.state == ModemState::Initialising {
                f.push(Problem(format!(
                    "no AT answer on {device} at {baud} baud. Try --baud 9600 or 57600; USB modems \
                     have several ports and only one or two answer AT commands (try the other \
                     /dev/serial/by-id/...-ifNN entries); check that ModemManager is not holding \
                     the port (systemctl stop ModemManager, or the udev rule in systemd/)"
                )));
            } else {
                let reason = reason
                    .strip_prefix(&format!("cannot open {device}: "))
                    .unwrap_or(&reason);
                f.push(Problem(format!(
                    "cannot use {device}: {reason}. Check the path (ls -l /dev/serial/by-id/), that \
                     the smsgw user is in the dialout group, and that no other program has the port open"
                )));
            }
            return f;
        }
        _ => {}
    }
    if reason.contains("no answer") {
        f.push(Problem(format!(
            "no AT answer at {baud} baud: try --baud 9600 or 57600, or another port of the same modem"
        )));
        return f;
    }
    let who = [s.info.manufacturer.as_deref(), s.info.model.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    f.push(Ok(format!(
        "the modem answers AT commands at {baud} baud: {} (IMEI {})",
        if who.is_empty() {
            "unknown model"
        } else {
            &who
        },
        s.info.imei.as_deref().unwrap_or("?")
    )));
    if reason.contains("SIM PIN required") {
        f.push(Problem(
            "the SIM asks for a PIN: give it on standard input with --pin-stdin (and pin = \"...\" in the [[modem]] section), \
             or remove the PIN in a phone"
                .into(),
        ));
        return f;
    }
    if reason.contains("PIN") && reason.contains("refused") || reason.contains("wrong") {
        f.push(Problem(format!(
            "{reason}. Careful: three wrong PINs lock the SIM (PUK)"
        )));
        return f;
    }
    if reason.contains("PUK") {
        f.push(Problem(
            "the SIM is PUK-locked: unlock it in a phone with the PUK from the operator".into(),
        ));
        return f;
    }
    if reason.contains("SIM not inserted") {
        f.push(Problem(
            "no SIM card: insert one (power the modem off first)".into(),
        ));
        return f;
    }
    if s.state == ModemState::Degraded && reason.starts_with("SIM") {
        f.push(Problem(format!("{reason}: try the SIM in a phone")));
        return f;
    }
    match s.registration {
        Some(r) if r.is_registered() => f.push(Ok(format!(
            "registered ({}){}",
            format!("{r:?}").to_lowercase(),
            s.operator
                .as_deref()
                .map(|o| format!(" on {o}"))
                .unwrap_or_default()
        ))),
        Some(r) => f.push(Problem(format!(
            "not registered on the network ({}): check the antenna and signal, that the SIM is \
             active (not suspended for unpaid bills or sending too fast), and that the modem \
             supports the operator's network (many 2G-only modems no longer work)",
            format!("{r:?}").to_lowercase()
        ))),
        None => f.push(Warning(
            "the modem does not say whether it is registered; a test send will tell".into(),
        )),
    }
    match s.signal.as_ref().and_then(|x| x.dbm()) {
        None => f.push(Warning(
            "signal unknown (AT+CSQ answered 99): no network in reach, or the antenna is loose"
                .into(),
        )),
        Some(d) if d < -100 => f.push(Warning(format!(
            "weak signal ({d} dBm): sends may fail or time out; move the antenna or use an extension cable"
        ))),
        Some(d) => f.push(Ok(format!("signal {d} dBm"))),
    }
    match &s.smsc {
        Some(c) => f.push(Ok(format!("SMS centre (SMSC) {c}"))),
        None => f.push(Problem(
            "no SMS centre (SMSC) number on the SIM: set smsc = \"+86...\" in the [[modem]] section \
             (ask the operator; China Mobile and China Unicom numbers differ by province)"
                .into(),
        )),
    }
    if let Some((used, total)) = s.storage {
        if total > 0 && used >= total {
            f.push(Warning(format!(
                "the SIM's message memory is full ({used}/{total}): incoming messages and stored \
                 reports are refused until the daemon reads and deletes them"
            )));
        } else {
            f.push(Ok(format!("SIM message memory {used}/{total}")));
        }
    }
    match &s.reports {
        Some(r @ crate::modem::ReportMode::Stored { .. }) => {
            f.push(Ok(format!("delivery reports {}", r.describe())))
        }
        Some(r) => f.push(Warning(format!("delivery reports {}", r.describe()))),
        None => {}
    }
    if s.state == ModemState::Ready {
        f.push(Ok("ready to send".into()));
    } else if !f.iter().any(|x| matches!(x, Problem(_))) {
        f.push(Problem(format!("the modem is {:?}: {reason}", s.state)));
    }
    f
}

/// Where the PIN came from (stdin, the environment), never argv.
fn pin_of(a: &DoctorArgs) -> Result<Option<Secret>, String> {
    if a.pin.is_some() {
        return Err(
            "--pin is refused: a command line is readable by every local user (ps). \
             Give the PIN on standard input with --pin-stdin, or in SMSGW_DOCTOR_PIN"
                .into(),
        );
    }
    if a.pin_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("--pin-stdin: {e}"))?;
        let pin = line.trim().to_string();
        if pin.is_empty() {
            return Err("--pin-stdin: standard input held no PIN".into());
        }
        return Ok(Some(Secret(pin)));
    }
    Ok(std::env::var("SMSGW_DOCTOR_PIN")
        .ok()
        .filter(|p| !p.is_empty())
        .map(Secret))
}

/// Pure: what a database's durability settings mean for an operator.
pub fn diagnose_database(d: &crate::store::durability::Durability) -> Vec<Finding> {
    let mut f = Vec::new();
    if d.durable() {
        f.push(Finding::Ok(format!(
            "{} keeps every commit through a power cut ({})",
            d.backend,
            d.settings_line()
        )));
    }
    for r in &d.risks {
        f.push(Finding::Problem(format!(
            "{} {} = {}: {}. Fix: {}",
            d.backend, r.setting, r.value, r.loses, r.fix
        )));
    }
    f
}

/// The database's findings: connects as the daemon would, migrates nothing.
async fn check_database(a: &DoctorArgs) -> Vec<Finding> {
    let (url, sync) = match (&a.database, &a.config) {
        (Some(u), _) => (u.clone(), crate::store::SqliteSync::Full),
        (None, Some(path)) => {
            let cfg = match crate::config::Config::load(Some(path)) {
                Ok(c) => c,
                Err(e) => return vec![Finding::Problem(format!("{}: {e}", path.display()))],
            };
            match cfg.database.connect_url() {
                Ok(u) => (u, cfg.database.sqlite_synchronous),
                Err(e) => return vec![Finding::Problem(e.to_string())],
            }
        }
        (None, None) => return Vec::new(),
    };
    let shown = crate::store::redact_url(&url);
    let store = match crate::store::Store::connect_with(&url, sync).await {
        Ok(s) => s,
        Err(e) => return vec![Finding::Problem(format!("cannot connect to {shown}: {e}"))],
    };
    match store.durability().await {
        Ok(d) => diagnose_database(&d),
        Err(e) => vec![Finding::Problem(format!(
            "cannot read the durability settings of {shown}: {e}"
        ))],
    }
}

pub fn run(a: DoctorArgs) -> anyhow::Result<ExitCode> {
    let pin = match pin_of(&a) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("smsgw doctor: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut findings = rt.block_on(check_database(&a));
    if let Some(device) = &a.device {
        let status = rt.block_on(probe(&a, device, pin));
        findings.extend(diagnose(&status, device, a.baud));
        print!("{}", render(&findings));
        if a.json {
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
    } else {
        print!("{}", render(&findings));
    }
    let problems = findings
        .iter()
        .filter(|f| matches!(f, Finding::Problem(_)))
        .count();
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn render(findings: &[Finding]) -> String {
    let mut o = String::new();
    for f in findings {
        let _ = match f {
            Finding::Ok(m) => writeln!(o, "  ok       {m}"),
            Finding::Warning(m) => writeln!(o, "  WARNING  {m}"),
            Finding::Problem(m) => writeln!(o, "  PROBLEM  {m}"),
        };
    }
    o
}

/// Runs the modem layer until it has initialised and polled the network once.
async fn probe(a: &DoctorArgs, device: &str, pin: Option<Secret>) -> ModemStatus {
    let mut cfg = ModemConfig::new("doctor", device.to_string());
    cfg.baud = a.baud;
    cfg.pin = pin;
    // One attempt; doctor reports, it does not keep retrying.
    cfg.reconnect_initial = Duration::from_secs(3600);
    cfg.reconnect_max = Duration::from_secs(3600);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Stored messages and reports are left on the modem: doctor deletes nothing.
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let h = modem::spawn(cfg, tx);
    let mut w = h.watch();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.timeout);
    loop {
        let s = w.borrow().clone();
        let settled = match s.state {
            ModemState::Ready => s.registration.is_some() || s.signal.is_some(),
            ModemState::Degraded | ModemState::Disconnected | ModemState::Stopped => true,
            _ => false,
        };
        if settled {
            break;
        }
        if tokio::time::timeout_at(deadline, w.changed())
            .await
            .is_err()
        {
            break;
        }
    }
    let status = h.status();
    h.shutdown().await;
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::at::parse::{Registration, Signal};

    fn base() -> ModemStatus {
        ModemStatus {
            id: "doctor".into(),
            device: "/dev/ttyUSB0".into(),
            state: ModemState::Ready,
            reason: None,
            since: chrono::Utc::now(),
            info: crate::modem::ModemInfo {
                manufacturer: Some("huawei".into()),
                model: Some("E3372".into()),
                imei: Some("867584012345678".into()),
                ..Default::default()
            },
            signal: Some(Signal { rssi: 20, ber: 0 }),
            registration: Some(Registration::Home),
            operator: Some("CHINA MOBILE".into()),
            smsc: Some("+8613800100500".into()),
            storage: Some((2, 50)),
            reports: None,
            parts_sent: 0,
            sends_failed: 0,
            desyncs: 0,
            last_error: None,
        }
    }

    fn problems(f: &[Finding]) -> Vec<String> {
        f.iter()
            .filter_map(|x| match x {
                Finding::Problem(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn healthy_modem_has_no_problem() {
        let f = diagnose(&base(), "/dev/ttyUSB0", 115_200);
        assert!(problems(&f).is_empty(), "{f:?}");
        assert!(render(&f).contains("ready to send"));
    }

    #[test]
    fn each_fault_is_explained() {
        let mut s = base();
        s.state = ModemState::Degraded;
        s.reason = Some("no answer to AT at 9600 baud".into());
        s.info = Default::default();
        assert!(problems(&diagnose(&s, "/dev/x", 9600))[0].contains("no AT answer"));

        let mut s = base();
        s.state = ModemState::Degraded;
        s.reason = Some("SIM PIN required but no pin is configured".into());
        assert!(problems(&diagnose(&s, "/dev/x", 115_200))[0].contains("--pin-stdin"));

        let mut s = base();
        s.state = ModemState::Degraded;
        s.registration = Some(Registration::Denied);
        s.reason = Some("not registered (Denied)".into());
        assert!(problems(&diagnose(&s, "/dev/x", 115_200))[0].contains("not registered"));

        let mut s = base();
        s.signal = Some(Signal { rssi: 3, ber: 0 });
        let f = diagnose(&s, "/dev/x", 115_200);
        assert!(f
            .iter()
            .any(|x| matches!(x, Finding::Warning(m) if m.contains("weak signal"))));

        let mut s = base();
        s.smsc = None;
        s.state = ModemState::Degraded;
        assert!(problems(&diagnose(&s, "/dev/x", 115_200))[0].contains("SMSC"));

        let mut s = base();
        s.state = ModemState::Disconnected;
        s.reason = Some("cannot open: No such file or directory".into());
        s.info = Default::default();
        assert!(problems(&diagnose(&s, "/dev/x", 115_200))[0].contains("ls -l /dev/serial/by-id"));
    }
}
