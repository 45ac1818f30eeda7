//! Drop-in layers for the tables of the tools branches are migrating from.
//!
//! Each layer is a translator at the edge: it reads another tool's tables,
//! queues what it finds in smsgw's own outbox (so every guarantee of the core
//! applies: limits, quiet hours, retries, ambiguity, no double send), and writes
//! the outcomes back as that tool would. The core never knows the layer exists.
//!
//! - [`db`]: another tool's database on any backend (pools, quoting, times).
//! - [`gammu`]: gammu-smsd's SQL tables (`outbox`, `outbox_multipart`,
//!   `sentitems`, `inbox`, `phones`), schema version 17.
//! - [`smsserver`]: SMSLib SMSServer's (金笛's) `smsserver_out`, `smsserver_in`
//!   and `smsserver_calls`.

pub mod db;
pub mod gammu;
pub mod smsserver;
