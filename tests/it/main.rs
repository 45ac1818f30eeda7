//! The integration test binary: one binary for every integration test, so the
//! 2-core build links once. Each module is one area.

mod at_engine;
mod at_parse;
mod at_props;
mod calls;
mod cli;
mod config;
mod control;
mod daemon_e2e;
mod daemon_faults;
mod db_restart;
mod doctor;
mod durability;
mod flood;
mod gammu;
mod hooks;
mod hostile;
mod layering;
mod lazyfs;
mod logs;
mod modem_e2e;
mod packaging;
mod pdu_props;
mod pdu_vectors;
mod power_cut;
mod restart;
mod service;
mod smsserver;
mod store;
mod tls;
