//! The technician's commands against a running daemon, through the status socket:
//! `status`, `modems`, `queue`, `message`, `watch`, and the control commands.
//! Output is a readable table by default and the daemon's raw JSON with `--json`.

use crate::control::client::{Client, ClientError};
use crate::control::proto::{
    Done, ErrorCode, MessageView, ModemView, QueueView, ReleaseAction, Request, Summary,
};
use clap::{Args, Subcommand, ValueEnum};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code when the daemon cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit code when the daemon refused a control request (not authorised).
pub const EXIT_FORBIDDEN: u8 = 4;

/// Where the daemon's status socket is.
#[derive(Debug, Args, Clone)]
pub struct Conn {
    /// The status socket (default: `[status] socket` of the configuration, else /run/smsgw/status.sock).
    #[arg(long, env = "SMSGW_STATUS__SOCKET")]
    pub socket: Option<PathBuf>,
    /// Configuration file to read `[status] socket` from.
    #[arg(long, short, env = "SMSGW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the daemon's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Conn {
    fn path(&self) -> PathBuf {
        if let Some(p) = &self.socket {
            return p.clone();
        }
        // The configuration may be unreadable to a technician (mode 0640): fall back.
        crate::config::Config::load(self.config.as_deref())
            .map(|c| PathBuf::from(c.status.socket))
            .unwrap_or_else(|_| PathBuf::from("/run/smsgw/status.sock"))
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReleaseArg {
    /// Send the unconfirmed parts again (the recipient may get them twice).
    Resend,
    /// Give up: the message becomes `failed`.
    Fail,
}

#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// The daemon at a glance: database, modems with signal, the queue.
    Status(Conn),
    /// Every modem: state and reason, signal, operator, sent today against the quota.
    Modems(Conn),
    /// Messages per state and category, the oldest due, the last hour's activity.
    Queue(Conn),
    /// One message (by id) or the recent messages to a number (--to).
    Message {
        #[command(flatten)]
        conn: Conn,
        /// Outbox id.
        id: Option<i64>,
        /// Recipient, in any form (+8613..., 13...).
        #[arg(long)]
        to: Option<String>,
    },
    /// Refresh the summary until Ctrl-C.
    Watch {
        #[command(flatten)]
        conn: Conn,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2)]
        interval: u64,
        /// Stop after this many refreshes (0 = never).
        #[arg(long, default_value_t = 0)]
        count: u64,
    },
    /// Stop giving work to a modem, or to every modem without MODEM.
    Pause {
        #[command(flatten)]
        conn: Conn,
        modem: Option<String>,
    },
    /// Resume a paused modem, or all sending without MODEM.
    Resume {
        #[command(flatten)]
        conn: Conn,
        modem: Option<String>,
    },
    /// One more attempt for a failed, expired, cancelled or ambiguous message.
    Retry {
        #[command(flatten)]
        conn: Conn,
        id: i64,
    },
    /// Never send a message that is still waiting.
    Cancel {
        #[command(flatten)]
        conn: Conn,
        id: i64,
    },
    /// Decide an ambiguous message: resend its unconfirmed parts, or fail it.
    Release {
        #[command(flatten)]
        conn: Conn,
        id: i64,
        #[arg(value_enum)]
        action: ReleaseArg,
    },
    /// Send a test SMS through one modem now (not through the outbox).
    TestSend {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        modem: String,
        #[arg(long)]
        to: String,
        #[arg(long, default_value = "smsgw test message")]
        text: String,
    },
    /// Reset a modem: reopen its port and initialise it again.
    Reset {
        #[command(flatten)]
        conn: Conn,
        modem: String,
    },
}

pub fn run(cmd: OpsCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(match rt.block_on(dispatch(cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smsgw: {}", shown(&e.to_string()));
            ExitCode::from(match &e {
                ClientError::Connect { .. } | ClientError::Closed => EXIT_UNREACHABLE,
                ClientError::Refused(b) if b.code == ErrorCode::Forbidden => EXIT_FORBIDDEN,
                ClientError::Refused(b) if b.code == ErrorCode::BadRequest => {
                    super::EXIT_INVALID_INPUT
                }
                _ => 1,
            })
        }
    })
}

/// Text for a person's terminal: what the daemon relays from outside (an
/// outbox row another system wrote, a modem's operator name, an error) may
/// hold escape sequences that would move the cursor, retitle the window or
/// fake output. Controls but newline and tab are shown as `\xNN` / `\u{..}`.
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    let odd = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(odd) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !odd(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

async fn dispatch(cmd: OpsCommand) -> Result<(), ClientError> {
    match cmd {
        OpsCommand::Status(c) => {
            let mut cl = Client::connect(&c.path()).await?;
            if c.json {
                let s = cl.raw(Request::Summary).await?;
                let m = cl.raw(Request::Modems).await?;
                // As in the table: the queue needs the database, the rest not.
                let q = match cl.raw(Request::Queue).await {
                    Ok(q) => q,
                    Err(ClientError::Refused(e)) => serde_json::json!({"unavailable": e.message}),
                    Err(e) => return Err(e),
                };
                print_json(&serde_json::json!({"summary": s, "modems": m, "queue": q}));
            } else {
                print!("{}", shown(&status_text(&mut cl).await?));
            }
        }
        OpsCommand::Modems(c) => {
            let mut cl = Client::connect(&c.path()).await?;
            if c.json {
                print_json(&cl.raw(Request::Modems).await?);
            } else {
                let m: Vec<ModemView> = cl.call(Request::Modems).await?;
                print!("{}", shown(&render_modems(&m)));
            }
        }
        OpsCommand::Queue(c) => {
            let mut cl = Client::connect(&c.path()).await?;
            if c.json {
                print_json(&cl.raw(Request::Queue).await?);
            } else {
                let q: QueueView = cl.call(Request::Queue).await?;
                print!("{}", shown(&render_queue(&q)));
            }
        }
        OpsCommand::Message { conn, id, to } => {
            let mut cl = Client::connect(&conn.path()).await?;
            let req = Request::Message { id, recipient: to };
            if conn.json {
                print_json(&cl.raw(req).await?);
            } else {
                let ms: Vec<MessageView> = cl.call(req).await?;
                for m in &ms {
                    print!("{}", shown(&render_message(m)));
                }
            }
        }
        OpsCommand::Watch {
            conn,
            interval,
            count,
        } => {
            // Keeps watching across a daemon restart: reconnects at each refresh.
            let path = conn.path();
            let mut cl: Option<Client> = None;
            let mut n = 0u64;
            loop {
                if cl.is_none() {
                    match Client::connect(&path).await {
                        Ok(c) => cl = Some(c),
                        Err(e) if n == 0 => return Err(e),
                        Err(_) => {}
                    }
                }
                let text = match cl.as_mut() {
                    None => format!(
                        "smsgw is not answering on {} (retrying every {interval} s)\n",
                        path.display()
                    ),
                    Some(c) => match status_text(c).await {
                        Ok(t) => t,
                        Err(e) => {
                            cl = None;
                            format!("smsgw: {e} (retrying every {interval} s)\n")
                        }
                    },
                };
                // Clear the screen and redraw in place.
                print!("\x1b[2J\x1b[H{}", shown(&text));
                use std::io::Write;
                let _ = std::io::stdout().flush();
                n += 1;
                if count > 0 && n >= count {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(interval.max(1))) => {}
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
        }
        OpsCommand::Pause { conn, modem } => control(&conn, Request::Pause { modem }).await?,
        OpsCommand::Resume { conn, modem } => control(&conn, Request::Resume { modem }).await?,
        OpsCommand::Retry { conn, id } => control(&conn, Request::Retry { id }).await?,
        OpsCommand::Cancel { conn, id } => control(&conn, Request::Cancel { id }).await?,
        OpsCommand::Release { conn, id, action } => {
            let action = match action {
                ReleaseArg::Resend => ReleaseAction::Resend,
                ReleaseArg::Fail => ReleaseAction::Fail,
            };
            control(&conn, Request::Release { id, action }).await?
        }
        OpsCommand::TestSend {
            conn,
            modem,
            to,
            text,
        } => control(&conn, Request::TestSend { modem, to, text }).await?,
        OpsCommand::Reset { conn, modem } => control(&conn, Request::Reset { modem }).await?,
    }
    Ok(())
}

async fn control(conn: &Conn, req: Request) -> Result<(), ClientError> {
    let mut cl = Client::connect(&conn.path()).await?;
    if conn.json {
        print_json(&cl.raw(req).await?);
    } else {
        let d: Done = cl.call(req).await?;
        if d.mrs.is_empty() {
            println!("{}", shown(&d.message));
        } else {
            println!("{} (message references {:?})", shown(&d.message), d.mrs);
        }
    }
    Ok(())
}

pub async fn status_text(cl: &mut Client) -> Result<String, ClientError> {
    let s: Summary = cl.call(Request::Summary).await?;
    let m: Vec<ModemView> = cl.call(Request::Modems).await?;
    // The queue needs the database; the rest of the picture does not.
    let q = match cl.call::<QueueView>(Request::Queue).await {
        Ok(q) => render_queue(&q),
        Err(ClientError::Refused(e)) => format!("QUEUE\n  unavailable: {}\n", e.message),
        Err(e) => return Err(e),
    };
    Ok(format!(
        "{}\n{}\n{q}",
        render_summary(&s),
        render_modems(&m)
    ))
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

pub fn render_summary(s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "smsgw {}  pid {}  up {}  instance {}",
        s.version,
        s.pid,
        duration(s.uptime_secs),
        s.owner
    );
    let db = if s.database.ok {
        "ok".to_string()
    } else {
        format!(
            "UNREACHABLE: {}",
            s.database.error.as_deref().unwrap_or("unknown error")
        )
    };
    let _ = writeln!(
        o,
        "database  {} {}  {db}",
        s.database.backend, s.database.url
    );
    for r in &s.database.durability_risks {
        let _ = writeln!(
            o,
            "          NOT POWER-SAFE: {} = {}: {}; fix: {}",
            r.setting, r.value, r.loses, r.fix
        );
    }
    if let Some(c) = &s.config_file {
        let _ = writeln!(o, "config    {c}");
    }
    let stalled = |v: Option<f64>| v.filter(|s| *s > super::super::control::proto::STALLED_SECS);
    let sending = if let Some(secs) = stalled(s.dispatcher_silent_secs) {
        format!(
            "STALLED: the dispatcher has made no progress for {} (nothing is dispatched)",
            duration(secs as u64)
        )
    } else if s.sending_paused {
        "PAUSED (smsgw resume)".to_string()
    } else {
        "on".to_string()
    };
    let _ = writeln!(o, "sending   {sending}");
    if let Some(secs) = stalled(s.recorder_busy_secs) {
        let _ = writeln!(
            o,
            "recorder  STALLED: one write has taken {} (reports and incoming messages wait)",
            duration(secs as u64)
        );
    }
    let _ = writeln!(o, "modems    {}/{} ready", s.modems_ready, s.modems_total);
    match s.waiting {
        Some(w) => {
            let _ = write!(o, "messages  {w} waiting");
        }
        None => {
            let _ = write!(o, "messages  unknown (the database does not answer)");
        }
    }
    if let Some(a) = s.ambiguous.filter(|a| *a > 0) {
        let _ = write!(
            o,
            ", {a} AMBIGUOUS (smsgw message ID; smsgw release ID resend|fail)"
        );
    }
    o.push('\n');
    if s.unrecorded > 0 {
        let _ = writeln!(
            o,
            "held      {} delivery reports/incoming messages waiting for the database",
            s.unrecorded
        );
    }
    o
}

/// Five-step signal meter, e.g. `####.`.
fn meter(bars: Option<u8>) -> String {
    match bars {
        None => "?????".into(),
        Some(b) => (0..5).map(|i| if i < b { '#' } else { '.' }).collect(),
    }
}

pub fn render_modems(ms: &[ModemView]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<12} {:<13} {:<16} {:<14} {:>12} {:>6}  DETAIL",
        "MODEM", "STATE", "SIGNAL", "OPERATOR", "SENT/QUOTA", "FAILED"
    );
    for m in ms {
        let state = if m.paused {
            format!("{} PAUSED", m.state)
        } else {
            m.state.clone()
        };
        let signal = match m.signal_dbm {
            Some(d) => format!("{} {d}dBm", meter(m.signal_bars)),
            None => meter(None),
        };
        let quota = if m.quota_per_day == 0 {
            format!("{}/-", m.sent_today)
        } else {
            format!("{}/{}", m.sent_today, m.quota_per_day)
        };
        let mut detail = Vec::new();
        if let Some(r) = &m.reason {
            detail.push(r.clone());
        }
        detail.push(format!("{} for {}", m.state, duration(m.in_state_secs)));
        if let Some(e) = &m.last_error {
            detail.push(format!("last error: {e}"));
        }
        let _ = writeln!(
            o,
            "{:<12} {:<13} {:<16} {:<14} {:>12} {:>6}  {}",
            m.id,
            state,
            signal,
            m.operator.as_deref().unwrap_or("-"),
            quota,
            m.failed_today,
            detail.join("; ")
        );
        let _ = writeln!(
            o,
            "{:<12} {} {} IMEI {}",
            "",
            m.device,
            [m.manufacturer.as_deref(), m.model.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
            m.imei.as_deref().unwrap_or("?")
        );
        if let Some(r) = &m.reports {
            let _ = writeln!(o, "{:<12} reports {r}", "");
        }
        if m.desyncs > 0 {
            let _ = writeln!(
                o,
                "{:<12} {} replies out of step (resynchronised)",
                "", m.desyncs
            );
        }
    }
    o
}

pub fn render_queue(q: &QueueView) -> String {
    let mut o = String::new();
    let mut states: Vec<&str> = q.counts.iter().map(|c| c.state.as_str()).collect();
    states.dedup();
    let _ = writeln!(o, "QUEUE");
    if states.is_empty() {
        let _ = writeln!(o, "  (empty)");
    }
    for st in states {
        let per: Vec<String> = q
            .counts
            .iter()
            .filter(|c| c.state == st)
            .map(|c| format!("{} {}", c.category, c.count))
            .collect();
        let total: i64 = q
            .counts
            .iter()
            .filter(|c| c.state == st)
            .map(|c| c.count)
            .sum();
        let _ = writeln!(o, "  {st:<11} {total:>7}  ({})", per.join(", "));
    }
    if let (Some(id), Some(at)) = (q.oldest_due_id, q.oldest_due_at) {
        let wait = (chrono::Utc::now() - at).num_seconds().max(0) as u64;
        let _ = writeln!(o, "  oldest due: message {id}, waiting {}", duration(wait));
    }
    let _ = writeln!(
        o,
        "  last hour: {} sent, {} delivered",
        q.sent_last_hour, q.delivered_last_hour
    );
    o
}

pub fn render_message(m: &MessageView) -> String {
    let (r, mut o) = (&m.row, String::new());
    let _ = writeln!(
        o,
        "message {}  to {}  {} (priority {})",
        r.id,
        r.recipient.as_deref().unwrap_or("?"),
        r.category,
        r.priority
    );
    let _ = writeln!(
        o,
        "  state {}  delivery {}  attempts {}",
        r.state, r.delivery, r.attempts
    );
    if let Some(owner) = &r.lease_owner {
        let _ = writeln!(o, "  being sent by instance {owner}");
    }
    if let Some(modem) = &r.modem {
        let _ = writeln!(
            o,
            "  sent by {modem} at {}  in {} part(s)",
            r.sent_at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|| "-".into()),
            r.parts_total.unwrap_or(0)
        );
    }
    if let Some(e) = &r.last_error {
        let _ = writeln!(o, "  last error: {e}");
    }
    if let Some(x) = &r.external_ref {
        let _ = writeln!(o, "  external ref: {x}");
    }
    for p in &m.parts {
        let _ = writeln!(
            o,
            "  part {}/{}  modem {}  ref {}  submitted {}  report: {}",
            p.seq,
            p.total,
            p.modem,
            p.mr.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
            p.submitted_at.format("%H:%M:%S"),
            p.status.as_str()
        );
    }
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn what_the_daemon_relays_cannot_drive_the_terminal() {
        use super::shown;
        // An outbox body another system wrote, as `smsgw message` shows it.
        let body = "提醒\x1b]0;pwned\x07\x1b[2J\r\u{9b}31m\u{7f}";
        let out = shown(body);
        assert!(!out.chars().any(|c| c.is_control()), "{out:?}");
        assert_eq!(out, "提醒\\x1b]0;pwned\\x07\\x1b[2J\\x0d\\u{9b}31m\\x7f");
        // Our own layout stays.
        assert_eq!(shown("a\tb\nc\n"), "a\tb\nc\n");
    }

    use super::*;

    #[test]
    fn meter_and_durations() {
        assert_eq!(meter(Some(3)), "###..");
        assert_eq!(meter(None), "?????");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(61), "1m01s");
        assert_eq!(duration(7260), "2h01m");
        assert_eq!(duration(90_000), "1d01h");
    }

    #[test]
    fn summary_says_what_waits_for_the_database() {
        let mut s: Summary = serde_json::from_value(serde_json::json!({
            "version": "0.1.0", "pid": 7, "started_at": "2026-12-01T00:00:00Z",
            "uptime_secs": 61, "config_file": null, "owner": "branch-1",
            "database": {"backend": "postgres", "url": "postgres://h/db", "ok": false,
                         "error": "pool timed out"},
            "modems_total": 2, "modems_ready": 2, "sending_paused": false,
            "waiting": null, "ambiguous": null
        }))
        .expect("a summary from a daemon without the field still reads");
        assert_eq!(s.unrecorded, 0);
        let text = render_summary(&s);
        assert!(text.contains("UNREACHABLE: pool timed out"), "{text}");
        assert!(!text.contains("held"), "{text}");
        s.unrecorded = 3;
        let text = render_summary(&s);
        assert!(
            text.contains(
                "held      3 delivery reports/incoming messages waiting for the database"
            ),
            "{text}"
        );
        assert!(text.contains("sending   on"), "{text}");
        s.dispatcher_silent_secs = Some(95.0);
        s.recorder_busy_secs = Some(0.0);
        let text = render_summary(&s);
        assert!(
            text.contains("STALLED: the dispatcher has made no progress for 1m35s"),
            "{text}"
        );
        assert!(!text.contains("recorder"), "{text}");
        assert!(!text.contains("POWER"), "{text}");
        s.database.durable = Some(false);
        s.database.durability_risks = crate::store::durability::judge(
            "postgres",
            &[("synchronous_commit".into(), "off".into())],
        )
        .risks;
        let text = render_summary(&s);
        assert!(
            text.contains("NOT POWER-SAFE: synchronous_commit = off:"),
            "{text}"
        );
        assert!(text.contains("fix: synchronous_commit = on"), "{text}");
    }
}
