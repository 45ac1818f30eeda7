//! The status socket's wire format, shared by the daemon and the CLI.
//!
//! One JSON object per line in each direction. A request names its protocol
//! version and what it wants (`{"v":1,"req":"modems"}`); each request gets exactly
//! one response line (`{"v":1,"ok":true,"data":...}` or
//! `{"v":1,"ok":false,"error":{"code":"...","message":"..."}}`), in order, on the
//! same connection. Fields are only ever added within a version; a client that
//! speaks another version gets `unsupported_version`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const VERSION: u32 = 1;

/// Longest request line accepted; a longer one is refused and the connection closed.
pub const MAX_REQUEST: usize = 16 * 1024;

/// What a client may ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "req", rename_all = "snake_case")]
pub enum Request {
    /// Version, uptime, database, configuration, totals.
    Summary,
    /// Every modem.
    Modems,
    /// Counts per state and category, recent activity.
    Queue,
    /// One message by id, or the recent messages to a recipient.
    Message {
        #[serde(default)]
        id: Option<i64>,
        #[serde(default)]
        recipient: Option<String>,
    },
    /// Stop giving work to one modem (`modem`) or to all (`modem` absent).
    Pause {
        #[serde(default)]
        modem: Option<String>,
    },
    Resume {
        #[serde(default)]
        modem: Option<String>,
    },
    /// One more attempt for a failed, expired, cancelled or ambiguous message.
    Retry { id: i64 },
    /// A message still waiting is never sent.
    Cancel { id: i64 },
    /// Decide an ambiguous message: send its unconfirmed parts again, or fail it.
    Release { id: i64, action: ReleaseAction },
    /// Send a message through one modem now (not through the outbox).
    TestSend {
        modem: String,
        to: String,
        text: String,
    },
    /// Reset a modem (reopen the port, initialise again).
    Reset { modem: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseAction {
    Resend,
    Fail,
}

impl Request {
    /// Requests that change state; only authorised peers may send them.
    pub fn is_control(&self) -> bool {
        !matches!(
            self,
            Request::Summary | Request::Modems | Request::Queue | Request::Message { .. }
        )
    }

    /// The request's name on the wire (for logs and refusals).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Summary => "summary",
            Request::Modems => "modems",
            Request::Queue => "queue",
            Request::Message { .. } => "message",
            Request::Pause { .. } => "pause",
            Request::Resume { .. } => "resume",
            Request::Retry { .. } => "retry",
            Request::Cancel { .. } => "cancel",
            Request::Release { .. } => "release",
            Request::TestSend { .. } => "test_send",
            Request::Reset { .. } => "reset",
        }
    }
}

/// A request as it travels: the version beside the request's own fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    #[serde(flatten)]
    pub request: Request,
}

/// Why a request failed, for programs to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not an object.
    BadJson,
    /// JSON, but not a request of this version (missing or wrong fields).
    BadRequest,
    /// A `req` this daemon does not know.
    UnknownRequest,
    UnsupportedVersion,
    /// Longer than [`MAX_REQUEST`].
    TooLarge,
    /// A peer that may not connect, or a control request from one that may only read.
    Forbidden,
    /// Every connection slot open to this peer is taken; try again shortly.
    Busy,
    /// No such message or modem.
    NotFound,
    /// The request is valid but cannot apply now (a sent message cannot be cancelled).
    Conflict,
    /// The modem or the database failed to do it.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    pub fn ok(data: impl Serialize) -> Response {
        Response {
            v: VERSION,
            ok: true,
            data: Some(serde_json::to_value(data).unwrap_or(Value::Null)),
            error: None,
        }
    }

    pub fn err(code: ErrorCode, message: impl Into<String>) -> Response {
        Response {
            v: VERSION,
            ok: false,
            data: None,
            error: Some(ErrorBody {
                code,
                message: message.into(),
            }),
        }
    }
}

/// Parses one request line; a refusal is already the response to send.
pub fn parse_request(line: &[u8]) -> Result<Request, Response> {
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| Response::err(ErrorCode::BadJson, format!("not JSON: {e}")))?;
    let Some(obj) = value.as_object() else {
        return Err(Response::err(
            ErrorCode::BadJson,
            "a request is a JSON object",
        ));
    };
    match obj.get("v").and_then(Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(Response::err(
                ErrorCode::UnsupportedVersion,
                format!("protocol version {v} is not supported; this daemon speaks {VERSION}"),
            ))
        }
        None => {
            return Err(Response::err(
                ErrorCode::BadRequest,
                "missing \"v\" (the protocol version, 1)",
            ))
        }
    }
    let Some(name) = obj.get("req").and_then(Value::as_str) else {
        return Err(Response::err(
            ErrorCode::BadRequest,
            "missing \"req\" (what is asked, e.g. \"summary\")",
        ));
    };
    let known = [
        "summary",
        "modems",
        "queue",
        "message",
        "pause",
        "resume",
        "retry",
        "cancel",
        "release",
        "test_send",
        "reset",
    ];
    if !known.contains(&name) {
        return Err(Response::err(
            ErrorCode::UnknownRequest,
            format!("unknown request {name:?}; known: {}", known.join(", ")),
        ));
    }
    let env: Envelope = serde_json::from_value(value.clone())
        .map_err(|e| Response::err(ErrorCode::BadRequest, format!("{name}: {e}")))?;
    Ok(env.request)
}

/// The daemon as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub version: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub uptime_secs: u64,
    pub config_file: Option<String>,
    /// This instance's name in leases.
    pub owner: String,
    pub database: DatabaseHealth,
    pub modems_total: usize,
    pub modems_ready: usize,
    pub sending_paused: bool,
    /// Messages waiting (queued + retrying) and waiting for an operator
    /// (ambiguous); absent while the database does not answer.
    pub waiting: Option<i64>,
    pub ambiguous: Option<i64>,
    /// Delivery reports and incoming messages held in memory because the database
    /// refused their write; written when it answers again.
    #[serde(default)]
    pub unrecorded: usize,
    /// Seconds since the dispatcher's loop last made progress (absent from
    /// older daemons). Over [`STALLED_SECS`] the status says it is stalled.
    #[serde(default)]
    pub dispatcher_silent_secs: Option<f64>,
    /// Seconds the recorder of modem events has been on one piece of work.
    #[serde(default)]
    pub recorder_busy_secs: Option<f64>,
}

/// A loop silent this long is reported as stalled (systemd's watchdog acts on
/// its own `WatchdogSec`).
pub const STALLED_SECS: f64 = 60.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseHealth {
    pub backend: String,
    /// The URL without its password.
    pub url: String,
    pub ok: bool,
    pub error: Option<String>,
    /// Whether the database keeps every commit through a power cut; absent
    /// while it does not answer (and from older daemons).
    #[serde(default)]
    pub durable: Option<bool>,
    /// The settings that lose committed writes, with the fix for each.
    #[serde(default)]
    pub durability_risks: Vec<crate::store::durability::Risk>,
}

/// One modem as a technician needs to see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModemView {
    pub id: String,
    pub device: String,
    pub state: String,
    pub reason: Option<String>,
    pub since: DateTime<Utc>,
    pub in_state_secs: u64,
    pub paused: bool,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub imei: Option<String>,
    pub operator: Option<String>,
    pub registration: Option<String>,
    pub signal_dbm: Option<i32>,
    /// 0..=5, `None` when the modem does not know.
    pub signal_bars: Option<u8>,
    pub sent_today: u32,
    pub failed_today: u32,
    /// Daily quota in parts; 0 = unlimited.
    pub quota_per_day: u32,
    pub busy: bool,
    /// SIM message storage used / total.
    pub storage: Option<(u32, u32)>,
    /// How delivery reports arrive, and what that risks (absent from older daemons).
    #[serde(default)]
    pub reports: Option<String>,
    /// Replies out of step with their command since the modem's actor started.
    #[serde(default)]
    pub desyncs: u64,
    pub last_error: Option<String>,
}

/// Signal bars as a phone would show them, from dBm.
pub fn bars(dbm: Option<i32>) -> Option<u8> {
    let d = dbm?;
    Some(match d {
        d if d >= -73 => 5,
        d if d >= -83 => 4,
        d if d >= -93 => 3,
        d if d >= -103 => 2,
        d if d >= -109 => 1,
        _ => 0,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCount {
    pub state: String,
    pub category: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueView {
    pub counts: Vec<QueueCount>,
    pub oldest_due_id: Option<i64>,
    pub oldest_due_at: Option<DateTime<Utc>>,
    pub sent_last_hour: i64,
    pub delivered_last_hour: i64,
}

/// One message: its outbox row and the parts the network acknowledged, each with
/// its message reference and delivery report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    #[serde(flatten)]
    pub row: crate::store::OutboxRow,
    pub parts: Vec<crate::store::PartRecord>,
}

/// What a control request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub message: String,
    /// Message references of a test send.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mrs: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &str) -> ErrorCode {
        parse_request(line.as_bytes())
            .unwrap_err()
            .error
            .unwrap()
            .code
    }

    #[test]
    fn requests_round_trip() {
        let all = [
            Request::Summary,
            Request::Modems,
            Request::Queue,
            Request::Message {
                id: Some(5),
                recipient: None,
            },
            Request::Pause { modem: None },
            Request::Resume {
                modem: Some("m1".into()),
            },
            Request::Retry { id: 1 },
            Request::Cancel { id: 2 },
            Request::Release {
                id: 3,
                action: ReleaseAction::Fail,
            },
            Request::TestSend {
                modem: "m1".into(),
                to: "+8613800138000".into(),
                text: "测试".into(),
            },
            Request::Reset { modem: "m2".into() },
        ];
        for r in all {
            let line = serde_json::to_vec(&Envelope {
                v: VERSION,
                request: r.clone(),
            })
            .unwrap();
            assert_eq!(parse_request(&line).unwrap(), r);
        }
    }

    #[test]
    fn refusals_are_classified() {
        assert_eq!(code("{not json"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"req":"summary"}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"v":2,"req":"summary"}"#),
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(code(r#"{"v":1,"req":"reboot"}"#), ErrorCode::UnknownRequest);
        assert_eq!(code(r#"{"v":1,"req":"retry"}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"v":1,"req":"release","id":1,"action":"maybe"}"#),
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn only_reads_are_open_to_everyone() {
        assert!(!Request::Summary.is_control());
        assert!(!Request::Message {
            id: None,
            recipient: Some("1".into())
        }
        .is_control());
        assert!(Request::Pause { modem: None }.is_control());
        assert!(Request::Reset { modem: "m".into() }.is_control());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]
        /// Any bytes: a request or a typed refusal, never a panic.
        #[test]
        fn any_line_gets_an_answer(line in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            match parse_request(&line) {
                Ok(r) => { let _ = r.name(); }
                Err(e) => proptest::prop_assert!(e.error.is_some() && !e.ok),
            }
        }

        /// Near-misses of real requests (fields shuffled, values of the wrong type).
        #[test]
        fn near_misses_are_refused_or_parsed(
            req in proptest::sample::select(vec!["summary", "modems", "message", "pause", "retry", "release", "test_send", "reset", "x"]),
            v in proptest::sample::select(vec!["1", "0", "2", "\"1\"", "null", "1.5"]),
            extra in proptest::sample::select(vec!["", ",\"id\":5", ",\"id\":\"5\"", ",\"modem\":7", ",\"action\":\"fail\",\"id\":1", ",\"to\":\"1\",\"text\":\"t\",\"modem\":\"m\""]),
        ) {
            let line = format!("{{\"v\":{v},\"req\":\"{req}\"{extra}}}");
            if let Ok(r) = parse_request(line.as_bytes()) {
                proptest::prop_assert_eq!(v, "1");
                proptest::prop_assert_eq!(r.name(), req);
            }
        }
    }

    #[test]
    fn bars_follow_dbm() {
        assert_eq!(bars(None), None);
        assert_eq!(bars(Some(-113)), Some(0));
        assert_eq!(bars(Some(-105)), Some(1));
        assert_eq!(bars(Some(-51)), Some(5));
        assert_eq!(bars(Some(-85)), Some(3));
    }
}
