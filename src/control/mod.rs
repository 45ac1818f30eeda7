//! The status socket: how technicians (through the `smsgw` CLI) and scripts see
//! and steer a running daemon. A Unix socket, newline-delimited JSON, versioned
//! ([`proto`], shared by both sides); [`server`] is the daemon's side, [`client`]
//! the CLI's, [`auth`] decides who may change state.

pub mod auth;
pub mod client;
pub mod proto;
pub mod server;
