//! Fuzzes the status socket's request parser: any line a local client sends must
//! give a request or a typed refusal, never a panic; a parsed request must survive
//! a round trip through the wire format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgw::control::proto::{parse_request, Envelope, VERSION};

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(req) => {
            let line = serde_json::to_vec(&Envelope { v: VERSION, request: req.clone() }).unwrap();
            assert_eq!(parse_request(&line).unwrap(), req);
        }
        Err(refusal) => {
            assert!(!refusal.ok);
            assert!(refusal.error.is_some());
        }
    }
});
