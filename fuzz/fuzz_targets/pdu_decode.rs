//! Fuzzes the PDU decoder with every layout: it must never panic, and whatever
//! it decodes must serialise to JSON (the CLI and the logs print it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgw::pdu::{decode, Layout};

fuzz_target!(|data: &[u8]| {
    let len = data.first().copied().unwrap_or(0) as usize;
    for layout in [Layout::Auto, Layout::WithSmsc, Layout::TpduOnly, Layout::TpduLen(len)] {
        if let Ok(d) = decode(data, layout) {
            let _ = serde_json::to_string(&d);
        }
    }
});
