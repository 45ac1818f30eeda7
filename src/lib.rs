//! smsgw: an SMS gateway daemon for GSM serial modems ("短信猫", single units and
//! modem pools). Other systems insert rows into an outbox table; smsgw sends them
//! through modems with AT commands in PDU mode, records delivery reports, and
//! stores incoming messages.
//!
//! # Layout
//!
//! Protocol logic is pure code (bytes, events and `now` in; bytes, events and
//! deadlines out), tested without I/O. Tokio, serial ports and SQL live at the edges.
//!
//! - [`pdu`]: the 3GPP TS 23.040 codec: alphabets, addresses, user data headers,
//!   SMS-SUBMIT encoding with splitting, DELIVER/SUBMIT/STATUS-REPORT decoding.
//! - [`at`]: the sans-IO AT core: framer, final results, URC registry, command
//!   engine with deadlines and resynchronisation, reply parsers, send classification.
//! - [`daemon`]: wiring of store, modems, dispatcher, status socket and metrics;
//!   SIGHUP's modem list; systemd READY/STATUS/WATCHDOG; ordered stop.
//! - [`dispatch`]: pure policy (quiet hours, limits, backoff, routing, opt-out), the
//!   loop that applies it (delivery reports, incoming messages), and the steering
//!   state it shares (pauses, wake-up, heartbeat, usage).
//! - [`control`]: the status socket: versioned NDJSON protocol shared by daemon and
//!   CLI, server, client, and who may steer (SO_PEERCRED).
//! - [`metrics`]: the optional Prometheus endpoint.
//! - [`logging`]: journald-friendly logs (syslog priority prefixes), text or JSON.
//! - [`demo`]: `smsgw demo`, the whole flow with simulated modems.
//! - [`config`]: TOML + `SMSGW_*` environment configuration, validated.
//! - [`cli`]: the `smsgw` command line (codec, daemon, technician and doctor commands).
//! - [`modem`]: the I/O shell: one actor per serial port (tokio-serial) owning an
//!   AT engine; handles, events, status, vendor handling.
//! - [`sim`]: the modem simulator (a pure model of a modem with quirks and faults,
//!   run on a real pty).
//! - [`store`]: the outbox contract, claims with leases, parts, inbox, opt-outs on
//!   SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! See `docs/architecture.md` for the flow of one message and the design decisions.

pub mod at;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod dispatch;
pub mod failpoint;
pub mod instance;
pub mod logging;
pub mod metrics;
pub mod modem;
pub mod pdu;
pub mod sim;
pub mod store;
