//! The modem layer's I/O shell: one tokio task (actor) per serial port owns the
//! port and an [`crate::at::Engine`]; the rest of the daemon talks to it through a
//! [`ModemHandle`] (requests with a oneshot reply, as in mini-redis) and hears from
//! it through [`ModemEvent`]s and a watched [`ModemStatus`].
//!
//! - [`actor`]: open, probe, identify, initialise, health polling, send, receive,
//!   recovery with capped exponential backoff.
//! - [`call`]: when the lines of an incoming call make a call to record (pure).
//! - [`vendor`]: per-family handling as data.

pub mod actor;
pub mod call;

/// The vendor profiles live beside the AT core (pure data).
pub use crate::at::vendor;

use crate::at::classify::{FailureClass, SendFailure};
use crate::at::parse::{Registration, Signal};
use crate::pdu::{Decoded, EncodedPart};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

pub use actor::{spawn, start};

/// A secret that never prints (SIM PIN).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"****\"")
    }
}

pub use crate::config::FlowControl;

/// Timings of one modem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Ordinary commands.
    pub command: Duration,
    /// `AT+CMGS=<len>` until the prompt.
    pub send_prompt: Duration,
    /// From Ctrl-Z until `+CMGS` (network-bound: SIM800 states 60 s, Quectel 120 s).
    pub send_result: Duration,
    /// The resynchronisation marker's OK.
    pub resync: Duration,
    /// How long a SIM may answer "busy" after power-up before init gives up.
    pub sim_busy: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            command: Duration::from_secs(5),
            send_prompt: Duration::from_secs(10),
            send_result: Duration::from_secs(120),
            resync: Duration::from_secs(3),
            sim_busy: Duration::from_secs(30),
        }
    }
}

/// Everything one modem actor needs.
#[derive(Debug, Clone)]
pub struct ModemConfig {
    pub id: String,
    /// A serial device path; `/dev/serial/by-id/...` survives re-enumeration.
    pub device: String,
    pub baud: u32,
    pub flow_control: FlowControl,
    pub pin: Option<Secret>,
    /// SMSC to set with `AT+CSCA` (else the SIM's is used, and checked).
    pub smsc: Option<String>,
    /// Force a vendor instead of detecting it.
    pub vendor: Option<String>,
    /// Extra init commands, sent after the standard ones.
    pub init: Vec<String>,
    /// Sent before reopening a modem that stopped answering (e.g. `AT+CFUN=1,1`).
    pub reset_command: Option<String>,
    /// Hang up incoming calls (`AT+CHUP`, else `ATH`).
    pub hang_up_calls: bool,
    pub timeouts: Timeouts,
    pub health_interval: Duration,
    /// Consecutive timeouts after which the port is closed and reopened.
    pub max_consecutive_timeouts: u32,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
}

impl ModemConfig {
    pub fn new(id: impl Into<String>, device: impl Into<String>) -> ModemConfig {
        ModemConfig {
            id: id.into(),
            device: device.into(),
            baud: 115_200,
            flow_control: FlowControl::None,
            pin: None,
            smsc: None,
            vendor: None,
            init: Vec::new(),
            reset_command: None,
            hang_up_calls: true,
            timeouts: Timeouts::default(),
            health_interval: Duration::from_secs(60),
            max_consecutive_timeouts: 3,
            reconnect_initial: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
        }
    }
}

/// Lifecycle of a modem as the rest of the daemon sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModemState {
    /// Opening, probing, initialising.
    Initialising,
    /// Sending is possible.
    Ready,
    /// Answering, but cannot send now (not registered, no SMSC, SIM problem).
    Degraded,
    /// Stopped answering; being reset and reopened.
    Resetting,
    /// The port is gone or cannot be opened.
    Disconnected,
    /// Stopped on request.
    Stopped,
}

/// What the modem is, as identified.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModemInfo {
    pub vendor: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub revision: Option<String>,
    pub imei: Option<String>,
    pub imsi: Option<String>,
    pub iccid: Option<String>,
}

/// A modem's current status (watched by the dispatcher and the status socket).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModemStatus {
    pub id: String,
    pub device: String,
    pub state: ModemState,
    /// Why it is in this state, for people.
    pub reason: Option<String>,
    pub since: DateTime<Utc>,
    pub info: ModemInfo,
    pub signal: Option<Signal>,
    pub registration: Option<Registration>,
    pub operator: Option<String>,
    pub smsc: Option<String>,
    /// (used, total) of the message memory.
    pub storage: Option<(u32, u32)>,
    /// How delivery reports reach smsgw on this modem, chosen at initialisation.
    pub reports: Option<ReportMode>,
    /// Parts sent and sends failed since the actor started.
    pub parts_sent: u64,
    pub sends_failed: u64,
    /// Replies that could not belong to their command (the line was out of step
    /// and was resynchronised), since the actor started.
    pub desyncs: u64,
    pub last_error: Option<String>,
}

/// How a modem hands over delivery reports (`AT+CNMI` `<ds>`), and what it risks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ReportMode {
    /// `<ds>=2`: stored in `mem` and announced with `+CDSI`; read at every start
    /// and deleted only after its record commits. Nothing is lost across a
    /// restart.
    Stored { mem: String },
    /// `<ds>=1`: routed to the port as `+CDS`. A report that arrives while no
    /// smsgw listens (a restart, an upgrade, a modem reset) is lost.
    Routed { why: String },
    /// The modem takes no `<ds>` at all: no delivery reports.
    None,
}

impl ReportMode {
    /// One line for `smsgw status` and `smsgw doctor`: the mode and its risk.
    pub fn describe(&self) -> String {
        match self {
            ReportMode::Stored { mem } => {
                format!("stored in {mem} (+CDSI): kept on the modem across restarts")
            }
            ReportMode::Routed { why } => format!(
                "routed (+CDS): a report arriving while smsgw is not running is lost ({why})"
            ),
            ReportMode::None => "none: the modem refuses every AT+CNMI <ds>".into(),
        }
    }
}

/// Where a message or report sits in the modem's memory until the daemon
/// confirms it has recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StoredAt {
    pub mem: String,
    pub index: u32,
    /// The PDU read there (hex). A delete first checks that the slot still holds
    /// it: a repeated delete must never remove a newer message stored since at
    /// the same index.
    pub pdu: String,
}

/// Something a modem received.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ModemEvent {
    /// An incoming SMS (one part). `stored`: delete it with [`ModemHandle::delete`]
    /// once recorded.
    Incoming {
        modem: String,
        pdu: Result<Decoded, String>,
        raw: String,
        stored: Option<StoredAt>,
    },
    /// A delivery report.
    StatusReport {
        modem: String,
        pdu: Result<Decoded, String>,
        raw: String,
        stored: Option<StoredAt>,
    },
    /// A `+CMGS: <mr>` that arrived after its send had timed out: the send with
    /// this outcome was not lost after all.
    LateSubmit { modem: String, mr: u8 },
    /// A `+CMGS: <mr>` read while synchronising a port just opened: the answer to
    /// the part a previous smsgw process had on the wire through this modem when
    /// it died (the row's in-flight marker names it).
    StaleSubmit { modem: String, mr: u8 },
    /// An incoming call, once per call: the caller from `+CLIP` (`None`:
    /// withheld, or the modem gave no `+CLIP`), and whether it was hung up.
    Call {
        modem: String,
        caller: Option<String>,
        at: DateTime<Utc>,
        hung_up: bool,
    },
}

/// One acknowledged part, and the caller's answer before the next part goes:
/// `Ok` to carry on (the part is recorded, the row is still ours), or why to stop.
#[derive(Debug)]
pub struct Progress {
    pub part: PartSent,
    pub go_on: oneshot::Sender<Result<(), String>>,
}

/// One acknowledged part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartSent {
    pub seq: u8,
    /// The reference delivery reports will carry (`None`: the modem said OK without one).
    pub mr: Option<u8>,
    pub at: DateTime<Utc>,
}

/// The result of sending one message's parts, in order. Parts after a failure
/// are not attempted; acknowledged parts must never be resent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SendReport {
    pub sent: Vec<PartSent>,
    /// Why the part after the last sent one failed, if one did.
    pub failure: Option<SendFailure>,
}

impl SendReport {
    fn failed(class: FailureClass, reason: impl Into<String>) -> SendReport {
        SendReport {
            sent: Vec::new(),
            failure: Some(SendFailure {
                class,
                reason: reason.into(),
            }),
        }
    }
}

/// Requests to a modem actor.
#[derive(Debug)]
pub enum Request {
    Send {
        parts: Vec<EncodedPart>,
        reply: oneshot::Sender<SendReport>,
        /// Each part, as soon as the network acknowledged it; the next part
        /// waits for the answer.
        progress: Option<mpsc::UnboundedSender<Progress>>,
    },
    Delete {
        at: StoredAt,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Reset and reopen now.
    Reset,
    Shutdown,
}

/// The rest of the daemon's handle on one modem.
#[derive(Debug, Clone)]
pub struct ModemHandle {
    pub id: String,
    tx: mpsc::Sender<Request>,
    status: watch::Receiver<ModemStatus>,
}

impl ModemHandle {
    /// Sends one message's parts through this modem (all parts on the same modem:
    /// delivery report matching and concatenation need it).
    pub async fn send(&self, parts: Vec<EncodedPart>) -> SendReport {
        self.send_with_progress(parts, None).await
    }

    /// As [`ModemHandle::send`], telling `progress` about each part the moment the
    /// network acknowledged it, and sending the next part only once `progress`
    /// answers that it may (the part is recorded, the row still ours).
    pub async fn send_with_progress(
        &self,
        parts: Vec<EncodedPart>,
        progress: Option<mpsc::UnboundedSender<Progress>>,
    ) -> SendReport {
        let (reply, rx) = oneshot::channel();
        let req = Request::Send {
            parts,
            reply,
            progress,
        };
        if self.tx.send(req).await.is_err() {
            return SendReport::failed(FailureClass::Modem, "modem task has stopped");
        }
        rx.await.unwrap_or_else(|_| {
            SendReport::failed(
                FailureClass::Ambiguous,
                "modem task stopped during the send",
            )
        })
    }

    /// Deletes a stored message or report the daemon has recorded.
    pub async fn delete(&self, at: StoredAt) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Delete { at, reply })
            .await
            .map_err(|_| "modem task has stopped".to_string())?;
        rx.await.map_err(|_| "modem task stopped".to_string())?
    }

    pub fn status(&self) -> ModemStatus {
        self.status.borrow().clone()
    }

    /// A receiver that changes whenever the status does.
    pub fn watch(&self) -> watch::Receiver<ModemStatus> {
        self.status.clone()
    }

    pub async fn reset(&self) {
        let _ = self.tx.send(Request::Reset).await;
    }

    pub async fn shutdown(&self) {
        let _ = self.tx.send(Request::Shutdown).await;
    }
}

/// The modems currently configured, shared by the dispatcher's owner, the status
/// socket, metrics and systemd's status line. It changes when SIGHUP adds or removes
/// a modem; readers take a snapshot.
#[derive(Debug, Clone, Default)]
pub struct Fleet(std::sync::Arc<std::sync::RwLock<Vec<ModemHandle>>>);

impl Fleet {
    pub fn new(handles: Vec<ModemHandle>) -> Fleet {
        Fleet(std::sync::Arc::new(std::sync::RwLock::new(handles)))
    }

    /// A snapshot, in configuration order.
    pub fn list(&self) -> Vec<ModemHandle> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn get(&self, id: &str) -> Option<ModemHandle> {
        self.list().into_iter().find(|m| m.id == id)
    }

    pub fn add(&self, h: ModemHandle) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).push(h);
    }

    pub fn remove(&self, id: &str) -> Option<ModemHandle> {
        let mut v = self.0.write().unwrap_or_else(|e| e.into_inner());
        let i = v.iter().position(|m| m.id == id)?;
        Some(v.remove(i))
    }
}
