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
//! - `crates/smsgw-wire/`: the sans-IO cores in a crate without tokio or sqlx,
//!   re-exported here as [`pdu`] and [`at`] (its `lib.rs` says why):
//! - [`pdu`]: the 3GPP TS 23.040 codec, pure: `gsm7.rs`, `ucs2.rs` (alphabets),
//!   `address.rs`, `udh.rs`, `dcs.rs`, `time.rs`, `status.rs` (fields),
//!   `split.rs` (text to SMS-SUBMIT parts), `decode.rs` (DELIVER, SUBMIT,
//!   STATUS-REPORT), `build.rs` (the network side, for the simulator).
//! - [`at`]: the sans-IO AT core: `framer.rs` (bytes to lines and prompts),
//!   `result.rs` (final result codes), `urc.rs` (unsolicited lines), `engine.rs`
//!   (one command in flight, deadlines, synchronisation at open, desync and
//!   reboot detection), `parse.rs` (replies), `classify.rs` (send outcomes),
//!   `vendor.rs` (per-family handling as data).
//! - [`modem`]: the I/O shell: `actor.rs`, one task per serial port
//!   (tokio-serial) owning an AT engine; `call.rs`, when an incoming call's
//!   lines make a call to record (pure); `mod.rs`, handles, events, status.
//! - [`dispatch`]: `core.rs` (the dispatcher's decisions, pure), `policy.rs`
//!   (quiet hours, limits, backoff, routing, opt-out keywords, pure),
//!   `dispatcher.rs` (the shell: claims, facts, decisions applied, leases
//!   renewed), `send.rs` (one message through one modem, recorded part by
//!   part), `inbound.rs` (the recorder of reports and incoming messages),
//!   `journal.rs` (its write-ahead file), `retry.rs` (writes retried while the
//!   database is away), `clock.rs` (the database's clock), `reload.rs`
//!   (SIGHUP), `steer.rs` (pauses, wake-up, heartbeats, usage).
//! - [`store`]: `model.rs` (states, outcomes, settling, pure), `contract.rs`
//!   (the outbox contract's rules, pure), `number.rs` (E.164), `ts.rs` (times
//!   on three backends), `watch.rs` (new rows noticed without a poll), `sql.rs` (the backend contract `Dialect` and every
//!   operation's SQL once), `durability.rs` (whether the database's settings
//!   keep a commit through a power cut, pure), `sqlite.rs`, `postgres.rs`, `mysql.rs` (what each
//!   dialect does its own way; migrations in `migrations/<backend>/`).
//! - [`compat`]: drop-in layers for other tools' tables, translators at the
//!   edge: `gammu/mod.rs` (gammu-smsd's rows to messages and back, pure),
//!   `gammu/db.rs` (its tables' SQL on each backend), `gammu/sync.rs` (the
//!   task that keeps them in step with smsgw's outbox); `smsserver/` the same
//!   three files for SMSLib SMSServer's tables; `db.rs` another tool's
//!   database on any backend; `mod.rs` the run loop both layers share and
//!   the cursors they keep.
//! - [`daemon`]: wiring and supervision of every task; systemd
//!   READY/STATUS/WATCHDOG; SIGHUP's modem list; the ordered stop.
//! - [`hooks`]: programs run after a commit (gammu's RunOnReceive, RunOnSent,
//!   RunOnFailure conventions), at most once, with a timeout.
//! - [`instance`]: this process's stable identity and its file lock.
//! - [`durable`]: files that survive a power cut (fsync of data and of the
//!   directory that names them).
//! - [`failpoint`]: named points where a crash test can kill the daemon.
//! - [`control`]: the status socket: `proto.rs` (versioned NDJSON shared by
//!   daemon and CLI), `server.rs`, `client.rs`, `auth.rs` (SO_PEERCRED).
//! - [`metrics`]: the optional Prometheus endpoint.
//! - [`logging`]: journald-friendly logs (syslog priority prefixes), text or JSON.
//! - [`config`]: TOML + `SMSGW_*` environment configuration, validated.
//! - [`cli`]: the `smsgw` command line: `mod.rs` (daemon-less commands),
//!   `ops.rs` (technician commands over the socket), `doctor.rs`, `inject.rs`
//!   (gammu-smsd-inject's command line), `gammu_config.rs` (`smsgw
//!   import-gammu-config`), `demo.rs`
//!   (`smsgw demo`, the whole flow with simulated modems).
//! - [`sim`]: the modem simulator: `model.rs` (a pure modem with quirks and
//!   faults), `profile.rs` (families as data), `pty.rs` (run on a real pty),
//!   `spec.rs` (the `sim:` device and latency syntax).
//!
//! See `docs/architecture.md` for the flow of one message and the design decisions.

pub use smsgw_wire::{at, pdu};
pub mod cli;
pub mod compat;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dispatch;
pub mod durable;
pub mod failpoint;
pub mod hooks;
pub mod instance;
pub mod logging;
pub mod metrics;
pub mod modem;
pub mod sim;
pub mod store;
