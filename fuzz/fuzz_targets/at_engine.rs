//! Fuzzes the AT engine with arbitrary modem output in arbitrary chunks and
//! time steps: no panic, bounded buffers, and the engine always gets back to idle
//! or waiting (never wedged with a command and no deadline).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgw::at::{Command, Engine, EngineConfig, Registry};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else { return };
    let mut e = Engine::new(Registry::standard(), EngineConfig::default());
    let mut now = Instant::now();
    e.submit(Command::send_pdu(16, "0011000B911326880736F40000A8"));
    e.submit(Command::new("AT+CPIN?").final_on_prefix());
    e.submit(Command::new("AT+CMGL=4"));
    let chunk = (ctl as usize % 17) + 1;
    for part in input.chunks(chunk) {
        while e.poll_transmit().is_some() {
            e.handle_written(now);
        }
        // Once everything is written, a busy engine always has a deadline.
        assert!(e.is_idle() || e.poll_timeout().is_some());
        e.handle_input(now, part);
        now += Duration::from_millis(u64::from(part[0]) * 40);
        if e.poll_timeout().is_some_and(|t| t <= now) {
            e.handle_timeout(now);
        }
        while e.poll_event().is_some() {}
    }
});
