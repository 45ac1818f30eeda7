//! Configuration: a TOML file plus `SMSGW_*` environment overrides, through the
//! config crate; [`Config::validate`] turns nonsense into clear messages.
//!
//! Pitfalls of the config crate avoided (each reproduced when this was built): nested keys
//! need the `__` separator (`SMSGW_DATABASE__URL`), values are never guessed into
//! numbers (a SIM PIN or SMSC `0046...` keeps its leading zeros), and keys are
//! snake_case because environment names are lowercased. Unknown keys are errors
//! (a typo must not silently do nothing). `smsgw check-config --print` shows the
//! effective configuration with secrets masked.
//!
//! A leaf: it imports only the pure codecs it validates against (PDU addresses,
//! the AT layer's vendor names, the simulator's device syntax), never the
//! daemon's layers; they build their own settings from it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub use crate::store::number::Numbering;

/// Serial flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowControl {
    #[default]
    None,
    Hardware,
    Software,
}

/// What a modem does with an incoming call.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CallPolicy {
    #[default]
    HangUp,
    Ignore,
}

/// The default config file.
pub const DEFAULT_PATH: &str = "/etc/smsgw/smsgw.toml";

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: Database,
    #[serde(rename = "modem")]
    pub modems: Vec<Modem>,
    pub status: Status,
    pub limits: Limits,
    /// Per category: at most this many messages of the category to one number per
    /// local day (beside `[limits] per_recipient_per_day` for all categories).
    pub recipient_limits: std::collections::BTreeMap<String, u32>,
    pub quiet_hours: QuietHours,
    pub sending: Sending,
    pub opt_out: OptOut,
    pub inbox: Inbox,
    pub log: Log,
    pub metrics: Metrics,
    pub instance: Instance,
    pub numbers: Numbering,
    pub compat: Compat,
    pub hooks: Hooks,
}

/// Programs run after an outcome is committed (docs/operations.md, "Hooks"),
/// with gammu-smsd's arguments and environment. At most once, never retried.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Hooks {
    /// Run for each incoming message: its inbox id as the argument.
    pub run_on_receive: Option<String>,
    /// Run for each message sent: its outbox id as the argument.
    pub run_on_sent: Option<String>,
    /// Run for each message that ends unsent (failed, rejected, expired,
    /// suppressed, cancelled): its outbox id as the argument.
    pub run_on_failure: Option<String>,
    /// A hook still running after this is killed.
    pub timeout_secs: u64,
    /// Hooks running at once; further ones wait.
    pub max_running: usize,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            run_on_receive: None,
            run_on_sent: None,
            run_on_failure: None,
            timeout_secs: 30,
            max_running: 4,
        }
    }
}

/// Drop-in layers for the tables of other tools (docs/integration.md, "gammu").
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Compat {
    /// Serve gammu-smsd's tables (`outbox`, `outbox_multipart`, `sentitems`).
    pub gammu: bool,
    /// The database holding gammu's tables (`sqlite://`, `postgres://`,
    /// `mysql://`). Not smsgw's own: both have a table called `outbox`.
    pub gammu_url: Option<String>,
    /// A file holding that database's password, as `[database] password_file`.
    pub gammu_password_file: Option<String>,
    /// How often gammu's outbox is read, in milliseconds (default 1000).
    pub gammu_poll_ms: Option<u64>,
    /// Serve SMSLib SMSServer's tables (`smsserver_out`, `smsserver_in`,
    /// `smsserver_calls`).
    pub smsserver: bool,
    /// The database holding them; may be smsgw's own (no table names clash).
    pub smsserver_url: Option<String>,
    /// A file holding that database's password.
    pub smsserver_password_file: Option<String>,
}

impl Compat {
    /// The url of gammu's database, with its password put in.
    pub fn gammu_connect_url(&self) -> Result<Option<String>, ConfigError> {
        let Some(url) = self.gammu_url.clone() else {
            return Ok(None);
        };
        let Some(f) = &self.gammu_password_file else {
            return Ok(Some(url));
        };
        let bad =
            |why: String| ConfigError::Invalid(format!("[compat] gammu_password_file: {why}"));
        let text = read_secret(std::path::Path::new(f)).map_err(bad)?;
        let password = text.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            return Err(bad(format!("{f} is empty")));
        }
        with_password(&url, password).map(Some).map_err(bad)
    }

    /// The url of SMSServer's database (default: smsgw's own), with its password.
    pub fn smsserver_connect_url(&self, own: &Database) -> Result<Option<String>, ConfigError> {
        if !self.smsserver {
            return Ok(None);
        }
        let Some(url) = self.smsserver_url.clone() else {
            return own.connect_url().map(Some);
        };
        let Some(f) = &self.smsserver_password_file else {
            return Ok(Some(url));
        };
        let bad =
            |why: String| ConfigError::Invalid(format!("[compat] smsserver_password_file: {why}"));
        let text = read_secret(std::path::Path::new(f)).map_err(bad)?;
        let password = text.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            return Err(bad(format!("{f} is empty")));
        }
        with_password(&url, password).map(Some).map_err(bad)
    }

    pub fn gammu_poll(&self) -> Duration {
        Duration::from_millis(self.gammu_poll_ms.unwrap_or(1000).clamp(50, 60_000))
    }
}

/// Who this smsgw is, among instances sharing one database.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Instance {
    /// The identity its leases carry. Default: the host name and a hash of the
    /// configuration file's path and the database url, stable across restarts,
    /// so a restarted process recognises (and settles at once) the rows its
    /// predecessor left. One process at a time holds an identity (a lock).
    pub id: Option<String>,
    /// Testing only: skews this machine's clock by this many seconds, as a badly
    /// set server would (leases still run on the database's clock).
    pub clock_skew_secs: i64,
}

/// Incoming messages.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Inbox {
    /// A concatenated message whose other parts have not arrived this many minutes
    /// after the newest one is stored with the parts that did (the network lost
    /// the rest), the missing ones marked: never kept out of the inbox for good.
    pub incomplete_after_minutes: u32,
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox {
            incomplete_after_minutes: 60,
        }
    }
}

/// The optional Prometheus endpoint (`GET /metrics`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Off by default.
    pub enabled: bool,
    /// Where to listen; loopback by default. Another address exposes modem and
    /// queue figures to the network: put it behind a firewall.
    pub listen: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            enabled: false,
            listen: "127.0.0.1:9725".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    /// `sqlite:///var/lib/smsgw/outbox/smsgw.db`, `postgres://...` or `mysql://...`.
    pub url: String,
    /// Apply pending migrations at start-up.
    pub migrate: bool,
    /// A file (0600, or readable by the daemon's user only) holding the
    /// database password, which `url` then leaves out. Without it, systemd's
    /// credential `database-password` (`LoadCredential=`) is used if present.
    pub password_file: Option<String>,
    /// SQLite only: how each commit reaches the disk. `full` (the default)
    /// syncs the write-ahead log at every commit, so a power cut loses no
    /// commit; `extra` also syncs the directory at each; `normal` syncs only
    /// at checkpoints, and a power cut then loses the last commits and sends
    /// their messages again (named at start, in `smsgw status` and `smsgw
    /// doctor --database`).
    pub sqlite_synchronous: crate::store::SqliteSync,
}

impl Default for Database {
    fn default() -> Self {
        Database {
            url: "sqlite:///var/lib/smsgw/outbox/smsgw.db".into(),
            migrate: true,
            password_file: None,
            sqlite_synchronous: crate::store::SqliteSync::Full,
        }
    }
}

/// The systemd credential the database password may come from.
pub const PASSWORD_CREDENTIAL: &str = "database-password";

impl Database {
    /// The url to connect with: `url`, with the password from `password_file`
    /// or from systemd's credential put in. The password never appears in the
    /// configuration, the environment or a command line.
    pub fn connect_url(&self) -> Result<String, ConfigError> {
        let from = match &self.password_file {
            Some(f) => Some(std::path::PathBuf::from(f)),
            None => std::env::var_os("CREDENTIALS_DIRECTORY")
                .map(|d| std::path::Path::new(&d).join(PASSWORD_CREDENTIAL))
                .filter(|p| p.exists()),
        };
        let Some(path) = from else {
            return Ok(self.url.clone());
        };
        let bad = |why: String| ConfigError::Invalid(format!("[database] password_file: {why}"));
        let text = read_secret(&path).map_err(bad)?;
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.is_empty() {
            return Err(bad(format!("{} is empty", path.display())));
        }
        with_password(&self.url, password).map_err(bad)
    }
}

/// A password file's text. Refused when every local user may read or change it
/// (mode o+r or o+w): a password there is no secret.
fn read_secret(path: &std::path::Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o006 != 0 {
        return Err(format!(
            "{} is mode {mode:04o}: other users can read or change it (chmod 0600, or 0640 with the daemon's group)",
            path.display()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Puts a password into a `scheme://user@host/...` url, percent-encoded.
pub fn with_password(url: &str, password: &str) -> Result<String, String> {
    if url.starts_with("sqlite:") {
        return Err("a SQLite database has no password".into());
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "the url has no scheme://".to_string())?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((user, host)) = authority.rsplit_once('@') else {
        return Err("the url names no user (scheme://user@host/db)".into());
    };
    if user.contains(':') {
        return Err("the url already holds a password; remove it from url".into());
    }
    let mut enc = String::with_capacity(password.len() * 3);
    for b in password.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(format!("{scheme}://{user}:{enc}@{host}{tail}"))
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Modem {
    pub id: String,
    /// A serial device (`/dev/serial/by-id/...`), or `sim:PROFILE` for a simulated
    /// modem started by the daemon itself (demos and tests).
    pub device: String,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default)]
    pub flow_control: FlowControl,
    /// SIM PIN, kept a string (leading zeros). Never logged.
    #[serde(default)]
    pub pin: Option<String>,
    /// SMSC to set on the modem; else the SIM's is used.
    #[serde(default)]
    pub smsc: Option<String>,
    /// Force a vendor (`huawei`, `zte`, `simcom`, `quectel`, `wavecom`, `cinterion`, `generic`).
    #[serde(default)]
    pub vendor: Option<String>,
    /// Rows with this `modem_group` may use this modem (and rows without a group, any modem).
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub init: Vec<String>,
    #[serde(default)]
    pub reset_command: Option<String>,
    /// Incoming calls: `hang_up` (the default: a ringing modem is a busy
    /// modem, and the caller hears the line end at once) or `ignore`.
    /// Either way the caller (`+CLIP`) is recorded in `calls`.
    #[serde(default)]
    pub calls: CallPolicy,
    /// Per-modem limits overriding `[limits]`.
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Ordinary AT commands (default 5 s).
    #[serde(default)]
    pub command_timeout_secs: Option<u64>,
    /// From Ctrl-Z to `+CMGS` (default 120 s: the network decides; SIM800 states 60 s, Quectel 120 s).
    #[serde(default)]
    pub send_timeout_secs: Option<u64>,
}

impl Modem {
    /// A `[[modem]]` section with every optional key at its default.
    pub fn new(id: impl Into<String>, device: impl Into<String>) -> Modem {
        Modem {
            id: id.into(),
            device: device.into(),
            baud: default_baud(),
            flow_control: FlowControl::default(),
            pin: None,
            smsc: None,
            vendor: None,
            calls: CallPolicy::default(),
            group: None,
            init: Vec::new(),
            reset_command: None,
            limits: None,
            command_timeout_secs: None,
            send_timeout_secs: None,
        }
    }
}

fn default_baud() -> u32 {
    115_200
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Status {
    pub socket: String,
    /// Members may read the status (technicians). `group` is its old name.
    #[serde(alias = "group")]
    pub read_group: Option<String>,
    /// Members may also steer (operators). `admin_group` is its old name.
    #[serde(alias = "admin_group")]
    pub operator_group: Option<String>,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            socket: "/run/smsgw/status.sock".into(),
            read_group: None,
            operator_group: None,
        }
    }
}

/// Rate limits; 0 means unlimited. Off until configured: a fresh install must
/// not silently run slower than its modems.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub per_minute: u32,
    pub per_hour: u32,
    pub per_day: u32,
    pub per_recipient_per_day: u32,
    /// All modems together, per minute.
    pub global_per_minute: u32,
}

/// Quiet hours per category, in `timezone`: `category = "HH:MM-HH:MM"`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct QuietHours {
    pub timezone: String,
    #[serde(flatten)]
    pub windows: BTreeMap<String, String>,
}

impl Default for QuietHours {
    fn default() -> Self {
        QuietHours {
            timezone: "Asia/Shanghai".into(),
            windows: BTreeMap::from([
                ("greeting".to_string(), "21:00-08:00".to_string()),
                ("marketing".to_string(), "21:00-08:00".to_string()),
            ]),
        }
    }
}

/// What to do with a message whose send may have reached the network.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AmbiguousPolicy {
    /// Hold it (state `ambiguous`) for an operator: never a duplicate by our fault.
    #[default]
    Hold,
    /// Resend the unconfirmed parts (a duplicate is possible).
    Resend,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Sending {
    pub max_parts: usize,
    pub max_attempts: u32,
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
    pub ambiguous: AmbiguousPolicy,
    /// Relative validity period requested from the SMSC, in minutes (0: network default).
    pub validity_minutes: u32,
    /// Delivery becomes `unknown` when reports do not arrive within this many hours.
    pub report_timeout_hours: u32,
    pub lease_secs: u64,
    pub poll_secs: u64,
    /// Due rows of these categories are claimed before any other due row, whatever
    /// their priority, category by category in this order: a reminder never waits
    /// behind a campaign. Within a category, priority then due time. `[]` =
    /// priority order only.
    pub urgent_categories: Vec<String>,
}

impl Default for Sending {
    fn default() -> Self {
        Sending {
            max_parts: 10,
            max_attempts: 5,
            retry_base_secs: 30,
            retry_max_secs: 3600,
            ambiguous: AmbiguousPolicy::Hold,
            validity_minutes: 24 * 60,
            report_timeout_hours: 48,
            lease_secs: 60,
            poll_secs: 5,
            urgent_categories: vec!["reminder".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OptOut {
    /// Replies that opt the sender out (case and width insensitive).
    pub keywords: Vec<String>,
    /// Categories still sent to opted-out recipients.
    pub exempt_categories: Vec<String>,
}

impl Default for OptOut {
    fn default() -> Self {
        OptOut {
            keywords: ["T", "TD", "退订", "STOP", "UNSUBSCRIBE"]
                .map(String::from)
                .to_vec(),
            exempt_categories: ["reminder", "notice"].map(String::from).to_vec(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `journald` (no timestamps, systemd adds them), `text` or `json`.
    pub format: String,
    pub level: String,
    /// Log message bodies at debug level.
    pub bodies: bool,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: "journald".into(),
            level: "info".into(),
            bodies: false,
        }
    }
}

/// A configuration that cannot work, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {message}")]
    Load { path: String, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads `path` (if it exists, or if it was named explicitly) and the
    /// environment overrides, then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut b = config::Config::builder();
        let file = path.unwrap_or(Path::new(DEFAULT_PATH));
        if path.is_some() || file.exists() {
            if !file.exists() {
                return Err(ConfigError::Load {
                    path: file.display().to_string(),
                    message: "no such file".into(),
                });
            }
            b = b.add_source(config::File::from(file).format(config::FileFormat::Toml));
        }
        b = b.add_source(
            config::Environment::with_prefix("SMSGW")
                .prefix_separator("_")
                .separator("__")
                .source(Some(overrides(std::env::vars()))),
        );
        let raw = b.build().map_err(|e| ConfigError::Load {
            path: file.display().to_string(),
            message: e.to_string(),
        })?;
        let cfg: Config = raw.try_deserialize().map_err(|e| ConfigError::Load {
            path: file.display().to_string(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what serde cannot: values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for (key, path) in [
            ("run_on_receive", &self.hooks.run_on_receive),
            ("run_on_sent", &self.hooks.run_on_sent),
            ("run_on_failure", &self.hooks.run_on_failure),
        ] {
            if let Some(p) = path {
                if !std::path::Path::new(p).is_absolute() {
                    return bad(format!("[hooks] {key} = {p:?}: an absolute path to a program (it is run without a shell)"));
                }
            }
        }
        if self.hooks.timeout_secs == 0 || self.hooks.max_running == 0 {
            return bad("[hooks] timeout_secs and max_running must be at least 1".into());
        }
        if self.compat.gammu {
            match self.compat.gammu_url.as_deref() {
                None | Some("") => {
                    return bad("[compat] gammu = true needs gammu_url: the database holding gammu's tables".into())
                }
                Some(u) if u.trim_end_matches('/') == self.database.url.trim_end_matches('/') => {
                    return bad("[compat] gammu_url is smsgw's own database: gammu's tables need a database of their own (both have a table called outbox; docs/integration.md, \"gammu\")".into())
                }
                Some(_) => {}
            }
        }
        if self.metrics.enabled && self.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad(format!(
                "[metrics] listen = {:?}: not an address:port (e.g. 127.0.0.1:9725)",
                self.metrics.listen
            ));
        }
        if self.inbox.incomplete_after_minutes == 0 {
            return bad(
                "[inbox] incomplete_after_minutes = 0: must be at least 1 (minutes to wait for the missing parts of an incoming message)".into(),
            );
        }
        let url = &self.database.url;
        if ![
            "sqlite:",
            "postgres://",
            "postgresql://",
            "mysql://",
            "mariadb://",
        ]
        .iter()
        .any(|p| url.starts_with(p))
        {
            return bad(format!(
                "[database] url {:?} must start with sqlite://, postgres:// or mysql://",
                crate::store::redact_url(url)
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for (i, m) in self.modems.iter().enumerate() {
            let at = format!("[[modem]] #{} (id {:?})", i + 1, m.id);
            if m.id.is_empty()
                || !m
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return bad(format!("{at}: id must be letters, digits, - or _"));
            }
            if !ids.insert(&m.id) {
                return bad(format!("{at}: id is used twice"));
            }
            if m.device.is_empty() {
                return bad(format!("{at}: device is empty"));
            }
            if let Some(spec) = m.device.strip_prefix("sim:") {
                if let Err(e) = crate::sim::spec::config(&m.id, spec) {
                    return bad(format!(
                        "{at}: device {:?}: expected sim:PROFILE[:MIN-MAX]: {e}",
                        m.device
                    ));
                }
            }
            if ![
                1200, 2400, 4800, 9600, 19200, 38400, 57600, 115_200, 230_400, 460_800, 921_600,
            ]
            .contains(&m.baud)
            {
                return bad(format!("{at}: baud {} is not a standard rate", m.baud));
            }
            if let Some(pin) = &m.pin {
                if !(4..=8).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
                    return bad(format!("{at}: pin must be 4 to 8 digits"));
                }
            }
            if let Some(smsc) = &m.smsc {
                if crate::pdu::Address::parse_number("smsc", smsc).is_err() {
                    return bad(format!("{at}: smsc {smsc:?} must be + and digits"));
                }
            }
            if let Some(v) = &m.vendor {
                if crate::at::vendor::by_name(v).is_none() {
                    return bad(format!("{at}: unknown vendor {v:?}"));
                }
            }
        }
        if self.quiet_hours.timezone.parse::<chrono_tz::Tz>().is_err() {
            return bad(format!(
                "[quiet_hours] timezone {:?} is not an IANA zone such as \"Asia/Shanghai\"",
                self.quiet_hours.timezone
            ));
        }
        for (cat, w) in &self.quiet_hours.windows {
            if parse_window(w).is_none() {
                return bad(format!(
                    "[quiet_hours] {cat} = {w:?}: expected \"HH:MM-HH:MM\""
                ));
            }
        }
        let s = &self.sending;
        if !(1..=255).contains(&s.max_parts) {
            return bad("[sending] max_parts must be 1 to 255".into());
        }
        if s.max_attempts == 0 {
            return bad("[sending] max_attempts must be at least 1".into());
        }
        if s.retry_base_secs == 0 || s.retry_max_secs < s.retry_base_secs {
            return bad("[sending] retry_base_secs must be > 0 and <= retry_max_secs".into());
        }
        // Leases are renewed part by part and every lease_secs / 3 while a message
        // is on a modem, so a lease need not outlive a send, only a renewal or two.
        if s.lease_secs < 10 {
            return bad(format!(
                "[sending] lease_secs ({}) must be at least 10 (renewed every third of it)",
                s.lease_secs
            ));
        }
        if s.poll_secs == 0 {
            return bad("[sending] poll_secs must be at least 1".into());
        }
        if let Some(c) = s
            .urgent_categories
            .iter()
            .find(|c| c.is_empty() || c.contains(',') || c.trim() != c.as_str())
        {
            return bad(format!(
                "[sending] urgent_categories: {c:?} is not a category name"
            ));
        }
        if !self.numbers.is_valid() {
            return bad(format!(
                "[numbers] default_country_code = {:?}: 1 to 3 digits without a leading 0 (86 for China)",
                self.numbers.default_country_code
            ));
        }
        if let Some(id) = &self.instance.id {
            if id.is_empty()
                || id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return bad(format!(
                    "[instance] id {id:?}: 1 to 64 letters, digits, '.', '-' or '_'"
                ));
            }
        }
        if !["journald", "text", "json"].contains(&self.log.format.as_str()) {
            return bad(format!(
                "[log] format {:?}: use journald, text or json",
                self.log.format
            ));
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_toml_masked(&self) -> String {
        let mut c = self.clone();
        for m in &mut c.modems {
            if m.pin.is_some() {
                m.pin = Some("****".into());
            }
        }
        c.database.url = crate::store::redact_url(&c.database.url);
        toml::to_string_pretty(&c).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.sending.poll_secs)
    }
}

/// The `SMSGW_*` variables that configure: every setting lives in a section, so
/// an override always names one (`SMSGW_DATABASE__URL`). Variables of the same
/// prefix that are not settings (`SMSGW_CONFIG`, the file the command line
/// reads; `SMSGW_DOCTOR_PIN`; `SMSGW_FAILPOINT`) are left out instead of being
/// refused as unknown keys.
pub fn overrides(vars: impl Iterator<Item = (String, String)>) -> config::Map<String, String> {
    vars.filter(|(k, _)| {
        k.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("SMSGW_")) && k[6..].contains("__")
    })
    .collect()
}

/// `"21:00-08:00"` -> minutes after midnight (start, end).
pub fn parse_window(w: &str) -> Option<(u32, u32)> {
    let (a, b) = w.split_once('-')?;
    let hm = |s: &str| {
        let (h, m) = s.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    Some((hm(a)?, hm(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgent_categories_are_plain_names() {
        assert_eq!(Config::default().sending.urgent_categories, ["reminder"]);
        for bad in ["", "a,b", " reminder"] {
            let mut c = Config::default();
            c.sending.urgent_categories = vec![bad.into()];
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("urgent_categories"), "{e}");
        }
        let mut c = Config::default();
        c.sending.urgent_categories.clear();
        c.validate().unwrap();
    }

    #[test]
    fn gammu_tables_need_a_database_of_their_own() {
        let mut c = Config::default();
        c.compat.gammu = true;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("gammu_url"), "{e}");
        c.compat.gammu_url = Some(format!("{}/", c.database.url));
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("both have a table called outbox"), "{e}");
        c.compat.gammu_url = Some("mysql://smsd@127.0.0.1/smsd".into());
        c.validate().unwrap();
        assert_eq!(c.compat.gammu_poll(), Duration::from_secs(1));
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        assert_eq!(
            Config::default().quiet_hours.windows["greeting"],
            "21:00-08:00"
        );
        assert_eq!(
            Config::default().limits.per_minute,
            0,
            "limits are off until configured"
        );
    }

    #[test]
    fn only_section_keys_are_overrides() {
        let vars = [
            ("SMSGW_DATABASE__URL", "sqlite://x"),
            ("SMSGW_CONFIG", "/etc/smsgw/smsgw.toml"),
            ("SMSGW_FAILPOINT", "before_record"),
            ("SMSGW_DOCTOR_PIN", "1234"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let m = overrides(vars.into_iter());
        assert_eq!(m.len(), 1);
        assert!(m.contains_key("SMSGW_DATABASE__URL"));
    }

    #[test]
    fn passwords_go_into_the_url_encoded() {
        assert_eq!(
            with_password(
                "postgres://smsgw@db:5432/smsgw?sslmode=require",
                "p@ss:w/rd 密"
            )
            .unwrap(),
            "postgres://smsgw:p%40ss%3Aw%2Frd%20%E5%AF%86@db:5432/smsgw?sslmode=require"
        );
        assert_eq!(
            with_password("mysql://root@127.0.0.1", "x").unwrap(),
            "mysql://root:x@127.0.0.1"
        );
        for (url, why) in [
            ("sqlite:///x.db", "SQLite"),
            ("postgres://u:old@db/x", "already"),
            ("postgres://db/x", "no user"),
            ("db/x", "scheme"),
        ] {
            let e = with_password(url, "x").unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
        }
        // From a file: its one line, not its newline; an empty file is refused.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let d = Database {
            url: "postgres://smsgw@db/smsgw".into(),
            migrate: true,
            password_file: Some(f.display().to_string()),
            ..Database::default()
        };
        assert_eq!(d.connect_url().unwrap(), "postgres://smsgw:s3cret@db/smsgw");
        std::fs::write(&f, "").unwrap();
        assert!(d.connect_url().unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn windows() {
        assert_eq!(parse_window("21:00-08:00"), Some((1260, 480)));
        assert_eq!(parse_window("25:00-08:00"), None);
        assert_eq!(parse_window("9-5"), None);
    }
}
