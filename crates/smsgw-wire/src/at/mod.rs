//! The sans-IO AT core: everything about talking to a modem that is not I/O.
//!
//! - [`framer`]: bytes to lines and `>` prompts, bounded.
//! - [`result`]: final result codes, typed (`OK`, `ERROR`, `+CME`/`+CMS ERROR`...).
//! - [`urc`]: the registry of unsolicited result codes, stripped before replies are parsed.
//! - [`engine`]: one command in flight, deadlines from `now`, resynchronisation.
//! - [`parse`]: reply parsers (`+CMGS`, `+CSQ`, `+CREG`, `+CPMS`, `+CMGR`/`+CMGL`...).
//! - [`classify`]: what a failed send means for the message and for the modem.
//! - [`vendor`]: what differs per modem family, as data.

pub mod classify;
pub mod engine;
pub mod framer;
pub mod parse;
pub mod result;
pub mod urc;
pub mod vendor;

pub use engine::{
    Command, CommandId, Engine, EngineConfig, Event, Outcome, Response, Stage, SyncCause,
};
pub use result::{ErrorCode, Final};
pub use urc::{Registry, Urc, UrcKind};
