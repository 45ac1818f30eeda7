//! What goes over the wire to a GSM modem, as pure code: the SMS PDU codec
//! ([`pdu`]) and the AT command engine ([`at`]).
//!
//! Why a crate of its own: these are the daemon's sans-IO cores (bytes, events
//! and `now` in; bytes, events and deadlines out), in the shape of quinn-proto.
//! Its Cargo.toml has no tokio, no sqlx and no serial port, so a change that
//! slips I/O or a clock read into them does not compile. smsgw re-exports both
//! modules (`smsgw::pdu`, `smsgw::at`).

pub mod at;
pub mod pdu;
