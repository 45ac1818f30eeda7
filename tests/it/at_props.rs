//! Property tests of the framer and engine over arbitrary bytes and chunkings:
//! no panic, bounded buffers, and chunking never changes what is parsed.

use proptest::prelude::*;
use smsgw::at::framer::{Frame, Framer, MAX_LINE};
use smsgw::at::{Command, Engine, EngineConfig, Registry};
use std::time::{Duration, Instant};

/// Bytes that look like modem output: real tokens glued with noise.
fn modem_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"\r\nOK\r\n".to_vec()),
        Just(b"\r\n> ".to_vec()),
        Just(b"\r\n+CMGS: 12\r\n".to_vec()),
        Just(b"\r\n+CMS ERROR: 500\r\n".to_vec()),
        Just(b"\r\n+CDS: 24\r\n".to_vec()),
        Just(b"0006230E9126983575169498610103409544C26101034095448200\r\n".to_vec()),
        Just(b"\r\n^RSSI:14\r\r\n".to_vec()),
        Just(b"\r\n+CMTI: \"SM\",1\r\n".to_vec()),
        Just(b"AT+CMGS=16\r".to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    prop::collection::vec(token, 0..40).prop_map(|v| v.concat())
}

fn frames_in_chunks(bytes: &[u8], cuts: &[usize]) -> Vec<Frame> {
    let mut f = Framer::new();
    let mut out = Vec::new();
    let mut start = 0;
    for &c in cuts {
        let end = c.min(bytes.len()).max(start);
        f.push(&bytes[start..end], &mut out);
        assert!(f.pending().len() <= MAX_LINE);
        start = end;
    }
    f.push(&bytes[start..], &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn chunking_never_changes_the_frames(bytes in modem_bytes(), mut cuts in prop::collection::vec(0usize..4000, 0..20)) {
        cuts.sort_unstable();
        prop_assert_eq!(frames_in_chunks(&bytes, &cuts), frames_in_chunks(&bytes, &[]));
    }

    #[test]
    fn engine_survives_anything(bytes in modem_bytes(), garbage in prop::collection::vec(any::<u8>(), 0..3000), steps in prop::collection::vec(0u64..5000, 1..30)) {
        let mut e = Engine::new(Registry::standard(), EngineConfig::default());
        let mut now = Instant::now();
        e.submit(Command::send_pdu(16, "0011000B911326880736F40000A8"));
        e.submit(Command::new("AT+CSQ"));
        let mut input = bytes.clone();
        input.extend(&garbage);
        let chunk = input.len() / steps.len() + 1;
        for (i, part) in input.chunks(chunk).enumerate() {
            while e.poll_transmit().is_some() {
                e.handle_written(now);
            }
            // Once everything is written, a busy engine always has a deadline: never wedged.
            prop_assert!(e.is_idle() || e.poll_timeout().is_some());
            e.handle_input(now, part);
            now += Duration::from_millis(steps[i % steps.len()]);
            if e.poll_timeout().is_some_and(|t| t <= now) {
                e.handle_timeout(now);
            }
            let mut events = 0;
            while e.poll_event().is_some() {
                events += 1;
            }
            // Events are bounded by the input: no runaway loop.
            prop_assert!(events <= part.len() + 4);
        }
    }
}
