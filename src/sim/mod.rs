//! The modem simulator: how the daemon meets a serial port on a machine with no
//! modem (tests, benchmarks, the demo). It must be realistic, not a happy-path echo:
//! vendor quirks and faults are the point.
//!
//! - [`profile`]: modem families' quirks as data (prompt, echo, noise, boot, errors).
//! - [`model`]: the modem as a pure state machine with fault injection.
//! - [`pty`]: runs a model on a real pseudo-terminal, with run-time controls.
//! - [`spec`]: the `sim:PROFILE[:MIN-MAX]` device and latency syntax.

pub mod model;
pub mod profile;
pub mod pty;
pub mod spec;

pub use model::{Faults, ReportOutcome, SimConfig, SimModem, Submitted};
pub use pty::{spawn, Control, SimHandle};
