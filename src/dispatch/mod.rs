//! Dispatching: which due message goes out now, on which modem, and what its
//! outcome means; and recording what the modems hear.
//!
//! - [`core`]: the decisions, pure (no I/O, no clock, no tokio).
//! - [`policy`]: the rules the core applies (quiet hours, rate windows, backoff,
//!   routing, opt-out keywords), pure.
//! - [`dispatcher`]: the shell: claims, facts, applying decisions, outcomes.
//! - [`send`]: one message through one modem, recorded part by part.
//! - [`inbound`]: the recorder of reports, incoming messages and late answers.
//! - [`journal`]: the recorder's write-ahead file for database outages.
//! - [`reload`]: what SIGHUP changes while running.
//! - [`clock`]: the database's clock, on which leases are compared.
//! - [`retry`]: writing a fact while the database is away.
//! - [`steer`]: what the dispatcher shares with the status socket.

pub mod clock;
pub mod core;
pub mod dispatcher;
pub mod inbound;
pub mod journal;
pub mod policy;
pub mod reload;
pub mod retry;
pub mod send;
pub mod steer;
