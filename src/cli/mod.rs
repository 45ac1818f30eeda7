//! The `smsgw` command line: argument definitions (clap) and the commands that
//! need no daemon. Kept in the library so integration tests can drive it too.
//!
//! Exit codes: 0 success, 2 invalid input (a PDU that does not decode, a number or
//! text that cannot be encoded, bad arguments), 3 the daemon cannot be reached,
//! 4 a control request was refused (not authorised), 1 anything else.
//!
//! The technician's commands against a running daemon live in [`ops`]; `smsgw
//! doctor` in [`doctor`].

pub mod demo;
pub mod doctor;
pub mod gammu_config;
pub mod inject;
pub mod ops;

use crate::pdu::{self, ConcatRef, Encoding, Layout, SubmitOptions};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;

/// Exit code for input the user can fix (mirrors clap's own usage errors).
pub const EXIT_INVALID_INPUT: u8 = 2;

/// Exit code of a daemon stopped because an essential task failed (EX_SOFTWARE).
pub const EXIT_FAILED: u8 = 70;

#[derive(Debug, Parser)]
#[command(
    name = "smsgw",
    version,
    about = "SMS gateway for GSM serial modems and modem pools"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Encode and decode SMS PDUs (for technicians and tests).
    #[command(subcommand)]
    Pdu(PduCommand),
    /// Run a simulated modem on a pseudo-terminal (for tests and demos without hardware).
    Sim(SimArgs),
    /// Show the whole flow with simulated modems: queue, send, deliver, opt out.
    Demo {
        /// A demo configuration (default: the built-in one, as config/demo.toml).
        #[arg(long, short)]
        config: Option<std::path::PathBuf>,
    },
    /// Run the daemon: send what the outbox holds, record reports and incoming messages.
    Run {
        #[arg(long, short, env = "SMSGW_CONFIG")]
        config: Option<std::path::PathBuf>,
    },
    /// Check the configuration (file plus SMSGW_* environment); --print shows the
    /// effective values with secrets masked.
    CheckConfig {
        #[arg(long, short, env = "SMSGW_CONFIG")]
        config: Option<std::path::PathBuf>,
        #[arg(long)]
        print: bool,
    },
    /// Create or upgrade the database schema (never drops anything).
    Migrate {
        #[arg(long, short, env = "SMSGW_CONFIG")]
        config: Option<std::path::PathBuf>,
        /// Database url (overrides `[database] url`).
        #[arg(long)]
        database: Option<String>,
    },
    /// Queue a message from the shell (technicians test with it).
    Enqueue(EnqueueArgs),
    /// Print the smsgw.toml equivalent to gammu-smsd's configuration files
    /// (one [[modem]] per smsdrc); passwords and PINs are never copied.
    ImportGammuConfig {
        /// gammu-smsd configuration files (smsdrc).
        #[arg(required = true)]
        smsdrc: Vec<std::path::PathBuf>,
    },
    /// Queue a message as gammu-smsd-inject does: `smsgw inject TEXT NUMBER
    /// -text "..."` (-unicode, -len, -autolen, -report, -flash, -validity,
    /// -smscnumber; the text from standard input without -text). Prints
    /// `Written message with ID N`.
    Inject(InjectArgs),
    /// Probe a modem port and explain what is wrong, without the daemon.
    Doctor(doctor::DoctorArgs),
    #[command(flatten)]
    Ops(ops::OpsCommand),
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    #[arg(long, short, env = "SMSGW_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Database url (overrides `[database] url`).
    #[arg(long)]
    pub database: Option<String>,
    #[arg(long)]
    pub to: String,
    #[arg(long)]
    pub text: String,
    /// greeting, reminder, notice, marketing... (drives quiet hours and opt-out).
    #[arg(long, default_value = "notice")]
    pub category: String,
    #[arg(long, default_value_t = 0)]
    pub priority: i32,
    /// Not before this UTC time (RFC 3339 or "YYYY-MM-DD HH:MM:SS").
    #[arg(long)]
    pub send_at: Option<String>,
    /// Give up after this UTC time.
    #[arg(long)]
    pub expires_at: Option<String>,
    #[arg(long)]
    pub dedupe_key: Option<String>,
    #[arg(long)]
    pub modem_group: Option<String>,
    /// Do not request a delivery report.
    #[arg(long)]
    pub no_report: bool,
    #[arg(long)]
    pub flash: bool,
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    #[arg(long, short, env = "SMSGW_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Database url (overrides `[database] url`).
    #[arg(long)]
    pub database: Option<String>,
    /// gammu-smsd-inject's arguments: TEXT NUMBER [options].
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

/// `smsgw sim`: a simulated modem. While it runs, lines on standard input steer it:
/// `incoming NUMBER TEXT` (both may use `\n`, `\r`, `\t`, `\\` and `\xNN`, for
/// hostile senders), `hang`, `unhang`, `unplug SECONDS`, `reboot`,
/// `deregister`, `register`, `garbage N`, `storage` (prints what the SIM
/// holds), `quit`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Symlink to create at PATH pointing at the pty (a stable device path for a config).
    #[arg(long)]
    pub link: Option<std::path::PathBuf>,
    /// Modem family to imitate.
    #[arg(long, default_value = "generic", value_parser = sim_profile)]
    pub profile: String,
    /// Append every part that reaches the network to FILE as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub record: Option<std::path::PathBuf>,
    /// Network time per part in milliseconds: N or MIN-MAX.
    #[arg(long, default_value = "0", value_name = "MS")]
    pub latency_ms: String,
    /// What happens after a part is accepted.
    #[arg(long, default_value = "delivered", value_parser = ["delivered", "still-trying", "failed", "never"])]
    pub report: String,
    /// Delay before a status report, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub report_delay_ms: u64,
    /// Probability (0-1) that a part is refused with --cms-error-code.
    #[arg(long, default_value_t = 0.0)]
    pub cms_error_rate: f64,
    #[arg(long, default_value_t = 500)]
    pub cms_error_code: u16,
    /// NUMBER:CODE: parts to NUMBER are always refused with +CMS ERROR: CODE (repeatable).
    #[arg(long, value_name = "NUMBER:CODE")]
    pub fail_recipient: Vec<String>,
    /// Probability (0-1) that the modem sends a part but never answers (ambiguous).
    #[arg(long, default_value_t = 0.0)]
    pub hang_after_ctrl_z_rate: f64,
    /// AT+CPIN= is echoed and answered only after this many ms (past the
    /// daemon's command timeout: the PIN's echo comes as a late reply).
    #[arg(long)]
    pub slow_pin_ms: Option<u64>,
    /// Start unregistered (sends fail with +CMS ERROR: 331).
    #[arg(long)]
    pub deregistered: bool,
    /// The SIM's message memory is full.
    #[arg(long)]
    pub sim_full: bool,
    /// Refuse routed status reports (AT+CNMI ds=1), so reports come stored (+CDSI).
    #[arg(long)]
    pub refuse_routed_reports: bool,
    /// Slots of the status report memory (SR).
    #[arg(long, default_value_t = 30)]
    pub report_slots: usize,
    /// While the report memory is full, refuse sends that request a report
    /// (+CMS ERROR: 322).
    #[arg(long)]
    pub refuse_sends_when_report_memory_full: bool,
    /// Require this SIM PIN.
    #[arg(long)]
    pub pin: Option<String>,
    /// First message reference (wraps at 255).
    #[arg(long, default_value_t = 0)]
    pub first_mr: u8,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Name of the modem in the record.
    #[arg(long, default_value = "sim")]
    pub id: String,
}

fn sim_profile(s: &str) -> Result<String, String> {
    crate::sim::profile::by_name(s)
        .map(|p| p.name.to_string())
        .ok_or_else(|| {
            format!(
                "unknown profile; known: {}",
                crate::sim::profile::names().join(", ")
            )
        })
}

#[derive(Debug, Subcommand)]
pub enum PduCommand {
    /// Decode a hex PDU (SMS-DELIVER, SMS-SUBMIT or SMS-STATUS-REPORT) and print it as JSON.
    Decode(DecodeArgs),
    /// Encode TEXT to NUMBER as SMS-SUBMIT PDUs; prints one JSON line per part.
    Encode(EncodeArgs),
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The PDU in hex, as the modem printed it (with or without the SMSC field).
    pub hex: String,
    /// The TPDU length the modem announced (`+CMGR: 1,,<len>`), to locate the SMSC field.
    #[arg(long, conflicts_with = "no_smsc")]
    pub tpdu_len: Option<usize>,
    /// The PDU has no SMSC field (a bare TPDU).
    #[arg(long)]
    pub no_smsc: bool,
    /// Print the JSON on one line.
    #[arg(long)]
    pub compact: bool,
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// Destination: an optional leading + and digits.
    #[arg(long)]
    pub to: String,
    /// SMSC number to embed (default: none, the modem uses its AT+CSCA setting).
    #[arg(long)]
    pub smsc: Option<String>,
    /// Request a delivery report for every part.
    #[arg(long)]
    pub report: bool,
    /// Relative validity period in minutes (rounded up to what the PDU can express).
    #[arg(long, value_name = "MINUTES")]
    pub validity: Option<u32>,
    /// Send as class 0 ("flash"): shown at once, not stored.
    #[arg(long)]
    pub flash: bool,
    /// Concatenation reference for multipart messages (0-255, or 0-65535 with --ref16).
    #[arg(long = "ref", value_name = "N", default_value_t = 0)]
    pub reference: u16,
    /// Use a 16-bit concatenation reference.
    #[arg(long)]
    pub ref16: bool,
    /// Always use UCS2, even when GSM-7 would do.
    #[arg(long)]
    pub ucs2: bool,
    /// The most parts the text may take.
    #[arg(long, default_value_t = 10)]
    pub max_parts: usize,
    /// The message text.
    pub text: String,
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Pdu(PduCommand::Decode(a)) => pdu_decode(&a),
        Command::Pdu(PduCommand::Encode(a)) => pdu_encode(&a),
        Command::Sim(a) => sim_run(a),
        Command::Run { config } => run_daemon(config.as_deref()),
        Command::Demo { config } => demo(config.as_deref()),
        Command::CheckConfig { config, print } => check_config(config.as_deref(), print),
        Command::Migrate { config, database } => migrate(config.as_deref(), database),
        Command::Enqueue(a) => enqueue(a),
        Command::Inject(a) => inject_cmd(a),
        Command::ImportGammuConfig { smsdrc } => import_gammu_config(&smsdrc),
        Command::Doctor(a) => doctor::run(a),
        Command::Ops(c) => ops::run(c),
    }
}

fn load_config(path: Option<&std::path::Path>) -> Result<crate::config::Config, ExitCode> {
    crate::config::Config::load(path).map_err(|e| {
        eprintln!("smsgw: {e}");
        ExitCode::from(EXIT_INVALID_INPUT)
    })
}

/// Logs: see [`crate::logging`].
pub fn init_logging(cfg: &crate::config::Log) {
    crate::logging::init(cfg);
}

fn demo(path: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let cfg = match path {
        Some(p) => match load_config(Some(p)) {
            Ok(c) => c,
            Err(code) => return Ok(code),
        },
        None => {
            let c: crate::config::Config = config::Config::builder()
                .add_source(config::File::from_str(
                    demo::DEMO_TOML,
                    config::FileFormat::Toml,
                ))
                .build()?
                .try_deserialize()?;
            c.validate()?;
            c
        }
    };
    init_logging(&cfg.log);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(demo::run(cfg))?;
    Ok(ExitCode::SUCCESS)
}

fn run_daemon(path: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    init_logging(&cfg.log);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let file = path
            .map(|p| p.display().to_string())
            .or_else(|| Some(crate::config::DEFAULT_PATH.to_string()).filter(|p| std::path::Path::new(p).exists()));
        let mut daemon = crate::daemon::Daemon::start_from(cfg, None, file).await?;
        let systemd = daemon.spawn_systemd();
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let code = loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break ExitCode::SUCCESS,
                _ = term.recv() => break ExitCode::SUCCESS,
                why = daemon.failed() => {
                    tracing::error!(reason = %why, "stopping: an essential task failed (exit 70; systemd restarts smsgw)");
                    break ExitCode::from(EXIT_FAILED);
                }
                _ = hup.recv() => match crate::config::Config::load(path) {
                    Ok(c) => daemon.reload(c).await,
                    Err(e) => tracing::error!(error = %e, "reload refused; the running configuration stays"),
                },
            }
        };
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        systemd.abort();
        if code == ExitCode::SUCCESS {
            daemon.shutdown().await;
        } else {
            // What is in flight is settled by the next start; bounded, so a wedged
            // task cannot keep a failed daemon alive.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(20), daemon.shutdown()).await;
        }
        anyhow::Ok(code)
    })
}

fn check_config(path: Option<&std::path::Path>, print: bool) -> anyhow::Result<ExitCode> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if print {
        println!("{}", cfg.to_toml_masked());
    } else {
        println!(
            "config ok: database {}, {} modem(s)",
            crate::store::redact_url(&cfg.database.url),
            cfg.modems.len()
        );
    }
    // Not errors: modems are plugged in and out, and the daemon waits for them.
    for m in &cfg.modems {
        if !m.device.starts_with("sim:") && !std::path::Path::new(&m.device).exists() {
            eprintln!(
                "warning: [[modem]] {:?}: device {} does not exist now (unplugged, or renamed: \
                 ls -l /dev/serial/by-id/); the daemon keeps trying to open it",
                m.id, m.device
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn open_store(url: &str, migrate: bool) -> anyhow::Result<crate::store::Store> {
    let store = crate::store::Store::connect(url).await?;
    if migrate {
        store.migrate().await?;
    }
    Ok(store)
}

fn migrate(path: Option<&std::path::Path>, database: Option<String>) -> anyhow::Result<ExitCode> {
    let url = match database {
        Some(u) => u,
        None => match load_config(path) {
            Ok(c) => c.database.connect_url()?,
            Err(code) => return Ok(code),
        },
    };
    runtime()?.block_on(async {
        let store = open_store(&url, true).await?;
        println!(
            "database {} ({}) is up to date",
            crate::store::redact_url(&url),
            store.backend()
        );
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

fn utc(arg: &str, v: &Option<String>) -> Result<Option<chrono::DateTime<chrono::Utc>>, String> {
    match v {
        None => Ok(None),
        Some(s) => crate::store::parse_time(s).map(Some).ok_or_else(|| {
            format!("--{arg} {s:?}: expected an RFC 3339 or \"YYYY-MM-DD HH:MM:SS\" UTC time")
        }),
    }
}

/// `smsgw import-gammu-config`: the TOML on standard output, notes as comments.
fn import_gammu_config(paths: &[std::path::PathBuf]) -> anyhow::Result<ExitCode> {
    let mut files = Vec::with_capacity(paths.len());
    for p in paths {
        match std::fs::read(p) {
            Ok(bytes) => files.push((
                p.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )),
            Err(e) => return invalid(format!("{}: {e}", p.display())),
        }
    }
    match gammu_config::import(&files) {
        Ok(i) => {
            print!("{}", i.toml);
            if !i.notes.is_empty() {
                eprintln!(
                    "smsgw: {} thing(s) not carried over: see the NOTE lines",
                    i.notes.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => invalid(e),
    }
}

/// `smsgw inject`: gammu-smsd-inject's forms, queued as `smsgw enqueue` queues.
fn inject_cmd(a: InjectArgs) -> anyhow::Result<ExitCode> {
    let m = match inject::parse(&a.args) {
        Ok(m) => m,
        Err(e) => return invalid(e),
    };
    for why in &m.ignored {
        eprintln!("smsgw inject: ignored {why}");
    }
    let text = match inject::text(&m, || std::io::read_to_string(std::io::stdin())) {
        Ok(t) => t,
        Err(e) => return invalid(e),
    };
    let e = EnqueueArgs {
        config: a.config,
        database: a.database,
        to: m.to.clone(),
        text,
        category: "notice".into(),
        priority: 0,
        send_at: None,
        expires_at: inject::expires_at(&m, chrono::Utc::now()).map(|t| t.to_rfc3339()),
        dedupe_key: None,
        modem_group: None,
        no_report: !m.report,
        flash: m.flash,
    };
    Ok(match enqueue_quiet(e)? {
        Ok(r) => {
            println!("Written message with ID {}", r.id);
            ExitCode::SUCCESS
        }
        Err(code) => code,
    })
}

fn enqueue(a: EnqueueArgs) -> anyhow::Result<ExitCode> {
    Ok(match enqueue_quiet(a)? {
        Ok(r) if r.duplicate => {
            println!("{} (already queued with this dedupe key)", r.id);
            ExitCode::SUCCESS
        }
        Ok(r) => {
            println!("{}", r.id);
            ExitCode::SUCCESS
        }
        Err(code) => code,
    })
}

/// Queues after the contract check: the queued row, or the exit code of a refusal.
fn enqueue_quiet(a: EnqueueArgs) -> anyhow::Result<Result<crate::store::Enqueued, ExitCode>> {
    let (url, migrate_db, max_parts) = match (&a.database, &a.config) {
        (Some(u), None) => (
            u.clone(),
            true,
            crate::config::Config::default().sending.max_parts,
        ),
        (database, config) => match load_config(config.as_deref()) {
            Ok(c) => (
                match database {
                    Some(u) => u.clone(),
                    None => c.database.connect_url()?,
                },
                database.is_some() || c.database.migrate,
                c.sending.max_parts,
            ),
            Err(code) => return Ok(Err(code)),
        },
    };
    let recipient = crate::store::contract::normalise_recipient(&a.to);
    if let Err(e) = crate::pdu::Address::parse_number("to", &recipient) {
        return invalid(e).map(Err);
    }
    // What the dispatcher would reject, refused now (`[sending] max_parts`).
    if let Err(reason) = crate::store::contract::check_body(&a.text, max_parts) {
        return invalid(format!("--text: {reason}")).map(Err);
    }
    let (send_at, expires_at) = match (utc("send-at", &a.send_at), utc("expires-at", &a.expires_at))
    {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return invalid(e).map(Err),
    };
    let m = crate::store::NewMessage {
        recipient: Some(recipient),
        body: Some(a.text.clone()),
        category: Some(a.category.clone()),
        priority: a.priority,
        send_at,
        expires_at,
        dedupe_key: a.dedupe_key.clone(),
        modem_group: a.modem_group.clone(),
        request_report: !a.no_report,
        flash: a.flash,
        external_ref: None,
    };
    runtime()?.block_on(async {
        let store = open_store(&url, migrate_db).await?;
        anyhow::Ok(Ok(store.enqueue(&m).await?))
    })
}

/// Builds the simulator's configuration from the command line.
pub fn sim_config(a: &SimArgs) -> Result<crate::sim::SimConfig, String> {
    use crate::sim::{profile, ReportOutcome, SimConfig};
    let mut cfg = SimConfig::new(
        a.id.clone(),
        profile::by_name(&a.profile).ok_or("unknown profile")?,
    );
    cfg.latency =
        crate::sim::spec::latency(&a.latency_ms).map_err(|e| format!("--latency-ms: {e}"))?;
    cfg.report_outcome = match a.report.as_str() {
        "delivered" => ReportOutcome::Delivered,
        "still-trying" => ReportOutcome::StillTryingThenDelivered,
        "failed" => ReportOutcome::Failed,
        _ => ReportOutcome::Never,
    };
    cfg.report_delay = std::time::Duration::from_millis(a.report_delay_ms);
    if !(0.0..=1.0).contains(&a.cms_error_rate) || !(0.0..=1.0).contains(&a.hang_after_ctrl_z_rate)
    {
        return Err("rates are probabilities between 0 and 1".into());
    }
    cfg.faults.cms_error_rate = a.cms_error_rate;
    cfg.faults.cms_error_code = a.cms_error_code;
    cfg.faults.hang_after_ctrl_z_rate = a.hang_after_ctrl_z_rate;
    cfg.faults.deregistered = a.deregistered;
    cfg.faults.slow_pin = a.slow_pin_ms.map(std::time::Duration::from_millis);
    cfg.faults.sim_full = a.sim_full;
    cfg.faults.refuse_routed_reports = a.refuse_routed_reports;
    cfg.faults.refuse_sends_when_report_memory_full = a.refuse_sends_when_report_memory_full;
    if a.report_slots == 0 {
        return Err("--report-slots must be at least 1".into());
    }
    cfg.report_slots = a.report_slots;
    for f in &a.fail_recipient {
        let (n, c) = f
            .rsplit_once(':')
            .and_then(|(n, c)| Some((n.to_string(), c.parse().ok()?)))
            .ok_or_else(|| format!("--fail-recipient {f:?}: expected NUMBER:CODE"))?;
        cfg.faults.fail_recipients.push((n, c));
    }
    cfg.pin = a.pin.clone();
    cfg.first_mr = a.first_mr;
    cfg.seed = a.seed;
    Ok(cfg)
}

fn sim_run(a: SimArgs) -> anyhow::Result<ExitCode> {
    use crate::sim::Control;
    use tokio::io::AsyncBufReadExt;
    let cfg = match sim_config(&a) {
        Ok(c) => c,
        Err(e) => return invalid(e),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let h = crate::sim::spawn(cfg, a.link.clone(), a.record.clone()).await?;
        println!(
            "simulated {} modem on {} (pty {})",
            a.profile,
            h.path.display(),
            h.pts.borrow().display()
        );
        println!("commands: incoming NUMBER TEXT | incomplete NUMBER TEXT (its last part lost) | ring NUMBER | hang | unhang | unplug SECONDS | reboot | deregister | register | garbage N | storage | quit");
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                l = lines.next_line() => {
                    let Ok(Some(l)) = l else {
                        // Standard input closed: keep running until interrupted.
                        tokio::signal::ctrl_c().await?;
                        break;
                    };
                    let mut w = l.trim().splitn(3, ' ');
                    match (w.next().unwrap_or(""), w.next(), w.next()) {
                        ("incoming", Some(n), Some(t)) => h.incoming(&unescape(n), &unescape(t)),
                        ("incomplete", Some(n), Some(t)) => {
                            let parts = crate::pdu::plan(t, crate::pdu::Encoding::Auto, false, 255).map(|p| p.parts.len()).unwrap_or(1);
                            h.control(Control::IncomingLosing { from: n.into(), text: t.into(), lost: vec![parts] });
                        }
                        ("ring", Some(n), r) => h.control(Control::Ring(unescape(n), r.and_then(|r| r.trim().parse().ok()))),
                        ("hang", ..) => h.control(Control::Hang(true)),
                        ("unhang", ..) => h.control(Control::Hang(false)),
                        ("unplug", Some(s), _) => h.control(Control::Unplug(std::time::Duration::from_secs_f64(s.parse().unwrap_or(1.0)))),
                        ("deregister", ..) => h.control(Control::Registered(false)),
                        ("register", ..) => h.control(Control::Registered(true)),
                        ("garbage", Some(n), _) => h.control(Control::Garbage(n.parse().unwrap_or(64))),
                        ("reboot", ..) => h.control(Control::Reboot),
                        ("storage", ..) => {
                            let (sm, sr) = h.stored();
                            println!("storage SM={sm} SR={sr}");
                        }
                        ("quit", ..) => break,
                        ("", ..) => {}
                        _ => eprintln!("unknown command: {l}"),
                    }
                }
            }
        }
        h.control(Control::Stop);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// `\n`, `\r`, `\t`, `\\` and `\xNN` in a simulator command's words, so that a
/// test can send what a line-based command could not carry. Anything else stays.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.peek().copied() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('x') => {
                it.next();
                let hex: String = it.clone().take(2).collect();
                match u8::from_str_radix(&hex, 16) {
                    Ok(b) if hex.len() == 2 => {
                        out.push(char::from(b));
                        it.next();
                        it.next();
                    }
                    _ => out.push_str("\\x"),
                }
                continue;
            }
            _ => {
                out.push('\\');
                continue;
            }
        }
        it.next();
    }
    out
}

fn invalid(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("smsgw: {msg}");
    Ok(ExitCode::from(EXIT_INVALID_INPUT))
}

fn pdu_decode(a: &DecodeArgs) -> anyhow::Result<ExitCode> {
    let layout = match (a.tpdu_len, a.no_smsc) {
        (Some(n), _) => Layout::TpduLen(n),
        (None, true) => Layout::TpduOnly,
        (None, false) => Layout::Auto,
    };
    let decoded = match pdu::decode_hex(&a.hex, layout) {
        Ok(d) => d,
        Err(e) => return invalid(format_args!("cannot decode PDU: {e}")),
    };
    let json = if a.compact {
        serde_json::to_string(&decoded)?
    } else {
        serde_json::to_string_pretty(&decoded)?
    };
    writeln!(std::io::stdout().lock(), "{json}")?;
    Ok(ExitCode::SUCCESS)
}

fn pdu_encode(a: &EncodeArgs) -> anyhow::Result<ExitCode> {
    let concat_ref = if a.ref16 {
        ConcatRef::Ref16(a.reference)
    } else {
        match u8::try_from(a.reference) {
            Ok(r) => ConcatRef::Ref8(r),
            Err(_) => return invalid("--ref must be 0-255 (use --ref16 for larger references)"),
        }
    };
    let opts = SubmitOptions {
        smsc: a.smsc.clone(),
        request_report: a.report,
        validity_minutes: a.validity,
        flash: a.flash,
        concat_ref,
        max_parts: a.max_parts,
        encoding: if a.ucs2 {
            Encoding::Ucs2
        } else {
            Encoding::Auto
        },
    };
    let parts = match pdu::encode_submit(&a.to, &a.text, &opts) {
        Ok(p) => p,
        Err(e) => return invalid(format_args!("cannot encode: {e}")),
    };
    let mut out = std::io::stdout().lock();
    for p in parts {
        writeln!(out, "{}", serde_json::to_string(&p)?)?;
    }
    Ok(ExitCode::SUCCESS)
}
