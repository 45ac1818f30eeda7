//! The AT engine against whole transcripts, in virtual time, with no I/O. Each
//! test is named after the modem or quirk its transcript comes from
//! (reference/modems.md §1.2, §3.4).

use smsgw::at::classify::{send_result, FailureClass, SendResult};
use smsgw::at::{
    Command, Engine, EngineConfig, Event, Final, Outcome, Registry, Stage, SyncCause, Urc,
};
use std::time::{Duration, Instant};

struct Harness {
    e: Engine,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            e: Engine::new(Registry::standard(), EngineConfig::default()),
            now: Instant::now(),
        }
    }

    /// Writes out what the engine wants written; returns it.
    fn flush(&mut self) -> String {
        let mut out = Vec::new();
        while let Some(b) = self.e.poll_transmit() {
            out.extend(b);
        }
        if !out.is_empty() {
            self.e.handle_written(self.now);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.e.handle_input(self.now, bytes);
    }

    /// Moves virtual time on, firing the deadline if it passed.
    fn advance(&mut self, d: Duration) {
        self.now += d;
        if self.e.poll_timeout().is_some_and(|t| t <= self.now) {
            self.e.handle_timeout(self.now);
        }
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.e.poll_event()).collect()
    }

    fn done(&mut self) -> Vec<(u64, Outcome)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Done { id, outcome } => Some((id, outcome)),
                _ => None,
            })
            .collect()
    }
}

fn lines(o: &Outcome) -> Vec<String> {
    match o {
        Outcome::Response(r) => r.lines.clone(),
        other => panic!("not a response: {other:?}"),
    }
}

const PDU: &str = "0021000C91197909913764000036D3E6";

#[test]
fn qualcomm_india_real_log_send_then_status_report() {
    // python-gsmmodem issue #44: prompt after 86 ms, +CMGS after 14.4 s, +CDS 6 s later.
    let mut h = Harness::new();
    let id = h.e.submit(Command::send_pdu(61, PDU));
    assert_eq!(h.flush(), "AT+CMGS=61\r");
    h.advance(Duration::from_millis(86));
    h.feed(b"\r\n> ");
    assert_eq!(h.flush(), format!("{PDU}\x1a"));
    h.advance(Duration::from_millis(14_400));
    h.feed(b"\r\n+CMGS: 64\r\n\r\nOK\r\n");
    let done = h.done();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, id);
    assert_eq!(send_result(&done[0].1), SendResult::Sent { mr: Some(64) });
    h.advance(Duration::from_secs(6));
    h.feed(
        b"\r\n+CDS: 25\r\n079119890400202306400C91197909913764511090718384225110907183252200\r\n",
    );
    let ev = h.events();
    assert_eq!(
        ev,
        [Event::Urc(Urc::StatusReport {
            length: Some(25),
            pdu: "079119890400202306400C91197909913764511090718384225110907183252200".into()
        })]
    );
    assert!(h.e.is_idle());
}

#[test]
fn simcom_sim7670g_bare_prompt_with_echo_on() {
    // gammu #1176: "AT+CMGS=26\r" echoed, then "\r\n>\r\n", then "\r".
    let mut h = Harness::new();
    h.e.submit(Command::send_pdu(26, PDU));
    h.flush();
    h.feed(b"AT+CMGS=26\r\r\n>\r\n\r");
    assert_eq!(h.flush(), format!("{PDU}\x1a"));
    h.feed(b"\r\n+CMGS: 7\r\n\r\nOK\r\n");
    assert_eq!(
        send_result(&h.done()[0].1),
        SendResult::Sent { mr: Some(7) }
    );
}

#[test]
fn huawei_echoes_the_pdu_in_crlf_chunks() {
    // at-messages-parser test19/20: the PDU echo is broken into CRLF-separated chunks.
    let mut h = Harness::new();
    h.e.submit(Command::send_pdu(16, PDU));
    h.flush();
    h.feed(b"AT+CMGS=16\r\r\n> ");
    h.flush();
    h.feed(format!("{}\r\n{}\r\n", &PDU[..14], &PDU[14..]).as_bytes());
    h.feed(b"\r\n+CMGS: 34\r\n\r\nOK\r\n");
    let done = h.done();
    assert_eq!(lines(&done[0].1), ["+CMGS: 34"]);
}

#[test]
fn prompt_followed_by_pdu_echo_on_the_same_line() {
    // node-pdu #22 (SIM800-class): "> 0041000B91..." then an error.
    let mut h = Harness::new();
    h.e.submit(Command::send_pdu(16, PDU));
    h.flush();
    h.feed(format!("\r\n> {PDU}\r\n").as_bytes());
    assert_eq!(h.flush(), format!("{PDU}\x1a"));
    h.feed(b"\r\n+CMS ERROR: 513\r\n");
    let done = h.done();
    match send_result(&done[0].1) {
        SendResult::Failed(f) => assert_eq!(f.class, FailureClass::Ambiguous),
        other => panic!("{other:?}"),
    }
}

#[test]
fn zte_urcs_before_prompt_and_before_result() {
    // python-gsmmodem test_sendSmsPduMode (ZTE): +ZDONR/+ZPASR interleaved everywhere.
    let mut h = Harness::new();
    h.e.submit(Command::send_pdu(16, PDU));
    h.flush();
    h.feed(
        b"\r\n+ZDONR: \"METEOR\",272,3,\"CS_ONLY\",\"ROAM_OFF\"\r\n\r\n+ZPASR: \"UMTS\"\r\n\r\n> ",
    );
    assert_eq!(h.flush(), format!("{PDU}\x1a"));
    h.feed(b"\r\n+ZDONR: \"METEOR\",272,3,\"CS_ONLY\",\"ROAM_OFF\"\r\n\r\n+ZPASR: \"UMTS\"\r\n");
    h.feed(b"\r\n+CMGS: 9\r\n\r\nOK\r\n");
    let ev = h.events();
    let noise = ev
        .iter()
        .filter(|e| matches!(e, Event::Urc(Urc::Noise { .. })))
        .count();
    assert_eq!(noise, 4);
    let done: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Done { outcome, .. } => Some(outcome),
            _ => None,
        })
        .collect();
    assert_eq!(lines(done[0]), ["+CMGS: 9"]);
}

#[test]
fn status_report_before_the_ok_of_the_send() {
    // A fast SC: +CDS arrives between +CMGS and OK; it must not end up in the reply.
    let mut h = Harness::new();
    h.e.submit(Command::send_pdu(16, PDU));
    h.flush();
    h.feed(b"\r\n> ");
    h.flush();
    h.feed(b"\r\n+CMGS: 12\r\n\r\n+CDS: 24\r\n0006230E9126983575169498610103409544C26101034095448200\r\n\r\nOK\r\n");
    let ev = h.events();
    assert!(matches!(
        &ev[0],
        Event::Urc(Urc::StatusReport {
            length: Some(24),
            ..
        })
    ));
    match &ev[1] {
        Event::Done { outcome, .. } => assert_eq!(lines(outcome), ["+CMGS: 12"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn error_followed_by_status_report_in_the_same_read() {
    // "sometime CMS followed by CDS" (a Perl gateway's comment).
    let mut h = Harness::new();
    h.e.submit(Command::send_pdu(16, PDU));
    h.flush();
    h.feed(b"\r\n> ");
    h.flush();
    h.feed(b"\r\n+CMS ERROR: 304\r\n+CDS: 25\r\n0006240C81802532143479510191012064825101910120158200\r\n");
    let ev = h.events();
    assert!(
        matches!(&ev[0], Event::Done { outcome: Outcome::Response(r), .. } if r.result.to_string() == "+CMS ERROR: 304")
    );
    assert!(matches!(&ev[1], Event::Urc(Urc::StatusReport { .. })));
}

#[test]
fn huawei_periodic_noise_never_becomes_a_reply() {
    // gammu #138: ^RSSI/^BOOT every ~15 s while a command waits.
    let mut h = Harness::new();
    h.e.submit(Command::new("AT+CSQ"));
    h.flush();
    h.feed(b"\r\n^RSSI:14\r\r\n\r\n^BOOT:35323129,0,0,0,26\r\n\r\n^MODE:5\r\r\n+CSQ: 16,99\r\n\r\nOK\r\n");
    let done = h.done();
    assert_eq!(lines(&done[0].1), ["+CSQ: 16,99"]);
}

#[test]
fn wavecom_cpin_without_ok() {
    let mut h = Harness::new();
    h.e.submit(Command::new("AT+CPIN?").final_on_prefix());
    h.flush();
    h.feed(b"\r\n+CPIN: READY\r\n");
    let done = h.done();
    assert_eq!(lines(&done[0].1), ["+CPIN: READY"]);
    assert!(h.e.is_idle());
}

#[test]
fn expected_prefix_wins_over_the_urc_registry() {
    // +CREG: 0,1 answers AT+CREG?; the same prefix unsolicited is a URC.
    let mut h = Harness::new();
    h.e.submit(Command::new("AT+CREG?"));
    h.flush();
    h.feed(b"\r\n+CREG: 0,1\r\n\r\nOK\r\n\r\n+CREG: 5\r\n");
    let ev = h.events();
    assert!(matches!(&ev[0], Event::Done { outcome, .. } if lines(outcome) == ["+CREG: 0,1"]));
    assert_eq!(ev[1], Event::Urc(Urc::Registration { stat: 5 }));
}

#[test]
fn incoming_message_urcs() {
    let mut h = Harness::new();
    h.feed(b"\r\n+CMTI: \"SM\",7\r\n\r\n+CMT: ,23\r\n07911326040000F0040B911346610089F60000208062917314080CC8329BFD06\r\n");
    h.feed(b"\r\n+CDSI: \"SR\",1\r\n\r\n+CDS: ,24\r\n0006230E9126983575169498610103409544C26101034095448200\r\n");
    let ev = h.events();
    assert_eq!(
        ev[0],
        Event::Urc(Urc::NewMessage {
            mem: "SM".into(),
            index: 7
        })
    );
    assert!(matches!(
        &ev[1],
        Event::Urc(Urc::Message {
            length: Some(23),
            ..
        })
    ));
    assert_eq!(
        ev[2],
        Event::Urc(Urc::StatusReportStored {
            mem: "SR".into(),
            index: 1
        })
    );
    assert!(matches!(
        &ev[3],
        Event::Urc(Urc::StatusReport {
            length: Some(24),
            ..
        })
    ));
}

#[test]
fn unknown_unsolicited_lines_are_reported_not_replies() {
    let mut h = Harness::new();
    h.feed(b"\r\n^WEIRDVENDOR: 1\r\n\r\nOK\r\n");
    let ev = h.events();
    // An unknown line is reported as such; a final result with no command in
    // flight is an answer out of step: reported, and the line is resynchronised
    // before the next command (it could have been taken for that command's answer).
    assert_eq!(
        ev,
        [
            Event::Unsolicited("^WEIRDVENDOR: 1".into()),
            Event::Desync {
                id: None,
                line: "OK".into()
            }
        ]
    );
    assert!(h.e.is_synchronising());
}

#[test]
fn timeout_is_armed_after_the_last_byte_is_written() {
    let mut h = Harness::new();
    h.e.submit(Command::new("AT+CSQ").timeout(Duration::from_secs(2)));
    // Not written yet: no deadline, however long we wait.
    assert_eq!(h.e.poll_timeout(), None);
    h.now += Duration::from_secs(60);
    h.flush();
    assert_eq!(h.e.poll_timeout(), Some(h.now + Duration::from_secs(2)));
}

#[test]
fn late_reply_never_reaches_the_next_command() {
    let mut h = Harness::new();
    let a =
        h.e.submit(Command::new("AT+CSQ").timeout(Duration::from_secs(2)));
    let b = h.e.submit(Command::new("AT+CREG?"));
    h.flush();
    h.advance(Duration::from_secs(2));
    assert_eq!(
        h.done(),
        [(a, Outcome::Timeout(Stage::Result { after_pdu: false }))]
    );
    assert_eq!(h.e.consecutive_timeouts(), 1);
    // The engine resynchronises before anything else.
    assert_eq!(h.flush(), "AT\r");
    // The late reply to AT+CSQ, then the OK of our AT.
    h.feed(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n\r\nOK\r\n");
    assert_eq!(h.flush(), "", "nothing is written while the line settles");
    h.advance(Duration::from_millis(300));
    let ev = h.events();
    assert!(ev.contains(&Event::LateReply {
        id: a,
        lines: vec!["+CSQ: 20,99".into()]
    }));
    assert!(ev.contains(&Event::Resynced));
    assert_eq!(h.e.consecutive_timeouts(), 0);
    assert_eq!(h.flush(), "AT+CREG?\r");
    h.feed(b"\r\n+CREG: 0,1\r\n\r\nOK\r\n");
    let done = h.done();
    assert_eq!(done[0].0, b);
    assert_eq!(lines(&done[0].1), ["+CREG: 0,1"]);
}

#[test]
fn hang_after_ctrl_z_is_ambiguous_and_a_late_cmgs_is_recovered() {
    let mut h = Harness::new();
    let id =
        h.e.submit(Command::send_pdu(16, PDU).timeout(Duration::from_secs(60)));
    h.flush();
    h.feed(b"\r\n> ");
    h.flush();
    h.advance(Duration::from_secs(60));
    let done = h.done();
    assert_eq!(
        done,
        [(id, Outcome::Timeout(Stage::Result { after_pdu: true }))]
    );
    assert!(
        matches!(send_result(&done[0].1), SendResult::Failed(f) if f.class == FailureClass::Ambiguous)
    );
    // Resync escapes a possible PDU entry first.
    assert_eq!(h.flush(), "\x1b\rAT\r");
    h.feed(b"\r\n+CMGS: 200\r\n\r\nOK\r\n\r\nOK\r\n");
    h.advance(Duration::from_millis(300));
    assert!(h.events().contains(&Event::LateReply {
        id,
        lines: vec!["+CMGS: 200".into()]
    }));
}

#[test]
fn no_prompt_is_a_modem_failure_and_nothing_was_sent() {
    let mut h = Harness::new();
    h.e.submit(Command::send_pdu(16, PDU));
    h.flush();
    h.advance(Duration::from_secs(10));
    let done = h.done();
    assert_eq!(done[0].1, Outcome::Timeout(Stage::Prompt));
    assert!(
        matches!(send_result(&done[0].1), SendResult::Failed(f) if f.class == FailureClass::Modem)
    );
}

#[test]
fn dead_modem_keeps_counting_timeouts_and_retrying_the_marker() {
    let mut h = Harness::new();
    h.e.submit(Command::new("AT").timeout(Duration::from_secs(1)));
    h.flush();
    h.advance(Duration::from_secs(1));
    for attempt in 1..=3 {
        assert_eq!(h.flush(), "AT\r");
        h.advance(Duration::from_secs(3));
        assert!(h
            .events()
            .contains(&Event::ResyncTimeout { attempts: attempt }));
    }
    assert_eq!(h.e.consecutive_timeouts(), 4);
    // The modem comes back.
    h.flush();
    h.feed(b"\r\nOK\r\n");
    h.advance(Duration::from_millis(300));
    assert!(h.events().contains(&Event::Resynced));
    assert_eq!(h.e.consecutive_timeouts(), 0);
}

#[test]
fn abort_all_reports_how_far_each_command_got() {
    let mut h = Harness::new();
    let a = h.e.submit(Command::send_pdu(16, PDU));
    let b = h.e.submit(Command::new("AT+CSQ"));
    h.flush();
    h.feed(b"\r\n> ");
    h.flush();
    h.e.abort_all();
    assert_eq!(
        h.done(),
        [
            (a, Outcome::Aborted(Stage::Result { after_pdu: true })),
            (b, Outcome::Aborted(Stage::Queued))
        ]
    );
    assert!(h.e.is_idle());
}

#[test]
fn numeric_results_while_probing() {
    let mut h = Harness::new();
    h.e.submit(Command::new("ATE0V1").numeric_finals());
    h.flush();
    h.feed(b"ATE0V1\r0\r");
    let done = h.done();
    assert!(matches!(&done[0].1, Outcome::Response(r) if r.result == Final::Ok));
}

#[test]
fn garbage_from_a_wrong_baud_rate_does_not_break_the_next_reply() {
    let mut h = Harness::new();
    h.e.submit(Command::new("AT"));
    h.flush();
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 131 % 251) as u8 | 0x80).collect();
    h.feed(&garbage);
    h.feed(b"\r\nOK\r\n");
    let ev = h.events();
    assert!(ev.iter().any(|e| matches!(e, Event::Overflow { .. })));
    assert!(ev.iter().any(
        |e| matches!(e, Event::Done { outcome: Outcome::Response(r), .. } if r.result == Final::Ok)
    ));
}

// --- A port just opened, out-of-step replies and reboots (issue: replies
// shifted by one after a restart). Every test runs the engine as a port just
// opened would, in virtual time.

impl Harness {
    fn opened() -> Harness {
        Harness {
            e: Engine::opened(Registry::standard(), EngineConfig::default()),
            now: Instant::now(),
        }
    }

    /// Drives a fresh engine through its synchronisation: escape, quiet line,
    /// marker answered. Returns what was written.
    fn sync(&mut self) -> String {
        let mut out = self.flush();
        self.advance(Duration::from_millis(300));
        out += &self.flush();
        self.feed(b"\r\n+CSCS: \"IRA\"\r\n\r\nOK\r\n");
        self.advance(Duration::from_millis(300));
        out
    }
}

#[test]
fn a_predecessors_cmgs_waiting_in_the_port_never_reaches_the_first_command() {
    // The killed process had sent a part; the modem answered after it died and
    // the bytes waited in the port. They are there before our first command.
    let mut h = Harness::opened();
    let cgmi = h.e.submit(Command::new("AT+CGMI"));
    assert_eq!(h.flush(), "\x1b\r", "only the escape goes out first");
    h.feed(b"\r\n+CMGS: 1\r\n\r\nOK\r\n");
    // Still arriving: the line is not quiet yet, nothing is written.
    h.advance(Duration::from_millis(200));
    assert_eq!(h.flush(), "");
    h.advance(Duration::from_millis(200));
    assert_eq!(
        h.flush(),
        "AT+CSCS?\r",
        "the marker, only once the line is quiet"
    );
    // A stale final before the marker's own answer is not taken for it.
    h.feed(b"\r\nOK\r\n");
    h.advance(Duration::from_secs(1));
    assert_eq!(h.flush(), "");
    h.feed(b"\r\n+CSCS: \"IRA\"\r\n\r\nOK\r\n");
    assert_eq!(h.flush(), "", "the line settles first");
    h.advance(Duration::from_millis(300));
    let ev = h.events();
    assert!(
        ev.contains(&Event::StaleReply {
            cause: SyncCause::Open,
            lines: vec!["+CMGS: 1".into()]
        }),
        "{ev:?}"
    );
    assert!(ev.contains(&Event::Resynced));
    assert_eq!(h.flush(), "AT+CGMI\r");
    h.feed(b"\r\nSIMCOM_Ltd\r\n\r\nOK\r\n");
    let done = h.done();
    assert_eq!(done[0].0, cgmi);
    assert_eq!(lines(&done[0].1), ["SIMCOM_Ltd"]);
}

#[test]
fn a_predecessors_answer_that_comes_after_the_marker_was_written_comes_before_its_answer() {
    // The predecessor's part was still with the network when we opened: the
    // modem answers it first, then our marker (answers come in order).
    let mut h = Harness::opened();
    let send = h.e.submit(Command::send_pdu(16, PDU));
    h.flush();
    h.advance(Duration::from_millis(300));
    assert_eq!(h.flush(), "AT+CSCS?\r");
    h.advance(Duration::from_secs(2));
    h.feed(b"\r\n+CMGS: 41\r\n\r\nOK\r\n");
    h.feed(b"\r\n+CSCS: \"GSM\"\r\n\r\nOK\r\n");
    h.advance(Duration::from_millis(300));
    let ev = h.events();
    assert!(ev.contains(&Event::StaleReply {
        cause: SyncCause::Open,
        lines: vec!["+CMGS: 41".into()]
    }));
    // Our own send then gets its own reference, not the predecessor's.
    assert_eq!(h.flush(), "AT+CMGS=16\r");
    h.feed(b"\r\n> ");
    h.flush();
    h.feed(b"\r\n+CMGS: 42\r\n\r\nOK\r\n");
    let done = h.done();
    assert_eq!(done[0].0, send);
    assert_eq!(send_result(&done[0].1), SendResult::Sent { mr: Some(42) });
}

#[test]
fn a_dead_modem_at_open_keeps_the_marker_going_and_counts() {
    let mut h = Harness::opened();
    h.flush();
    h.advance(Duration::from_millis(300));
    for attempt in 1..=3 {
        assert_eq!(h.flush(), "AT+CSCS?\r");
        h.advance(Duration::from_secs(3));
        assert!(h
            .events()
            .contains(&Event::ResyncTimeout { attempts: attempt }));
    }
    assert_eq!(h.e.consecutive_timeouts(), 3);
    assert!(h.e.is_synchronising());
}

#[test]
fn a_modem_that_refuses_the_marker_is_synchronised_with_at() {
    let mut h = Harness::opened();
    h.flush();
    h.advance(Duration::from_millis(300));
    for _ in 0..2 {
        assert_eq!(h.flush(), "AT+CSCS?\r");
        h.feed(b"\r\nERROR\r\n");
        h.advance(Duration::from_secs(3));
    }
    assert_eq!(h.flush(), "AT\r", "falls back to a plain AT");
    h.feed(b"\r\nOK\r\n");
    h.advance(Duration::from_millis(300));
    assert!(h.events().contains(&Event::Resynced));
}

#[test]
fn a_modem_in_numeric_mode_at_open_still_synchronises() {
    let mut h = Harness::opened();
    h.flush();
    h.advance(Duration::from_millis(300));
    assert_eq!(h.flush(), "AT+CSCS?\r");
    h.feed(b"\r\n+CSCS: \"IRA\"\r\n0\r");
    h.advance(Duration::from_millis(300));
    assert!(h.events().contains(&Event::Resynced));
}

#[test]
fn a_cmgs_for_a_command_that_is_not_a_send_is_a_desync() {
    let mut h = Harness::new();
    let csq = h.e.submit(Command::new("AT+CSQ"));
    let creg = h.e.submit(Command::new("AT+CREG?"));
    h.flush();
    // A send's late answer arrives while AT+CSQ is in flight: the line is out of step.
    h.feed(b"\r\n+CMGS: 9\r\n\r\nOK\r\n");
    let ev = h.events();
    assert!(ev.contains(&Event::Done {
        id: csq,
        outcome: Outcome::Desync(Stage::Result { after_pdu: false })
    }));
    assert!(ev.contains(&Event::Desync {
        id: Some(csq),
        line: "+CMGS: 9".into()
    }));
    assert_eq!(h.e.desyncs(), 1);
    // The OK that followed, and AT+CSQ's own answer, go into the drain.
    assert_eq!(h.flush(), "\x1b\r");
    h.feed(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n");
    h.advance(Duration::from_millis(300));
    assert_eq!(h.flush(), "AT+CSCS?\r");
    h.feed(b"\r\n+CSCS: \"IRA\"\r\n\r\nOK\r\n");
    h.advance(Duration::from_millis(300));
    let ev = h.events();
    assert!(ev.contains(&Event::StaleReply {
        cause: SyncCause::Desync,
        lines: vec!["+CMGS: 9".into(), "+CSQ: 20,99".into()]
    }));
    assert_eq!(h.flush(), "AT+CREG?\r");
    h.feed(b"\r\n+CREG: 0,1\r\n\r\nOK\r\n");
    let done = h.done();
    assert_eq!(
        (done[0].0, lines(&done[0].1)),
        (creg, vec!["+CREG: 0,1".to_string()])
    );
}

#[test]
fn an_ok_before_the_prompt_is_a_desync_never_a_sent_part() {
    let mut h = Harness::new();
    let id = h.e.submit(Command::send_pdu(16, PDU));
    h.flush();
    h.feed(b"\r\nOK\r\n");
    let done = h.done();
    assert_eq!(done, [(id, Outcome::Desync(Stage::Prompt))]);
    assert!(
        matches!(send_result(&done[0].1), SendResult::Failed(f) if f.class == FailureClass::Modem),
        "nothing was sent: the message goes back unharmed"
    );
}

#[test]
fn another_commands_answer_after_the_pdu_makes_the_send_ambiguous() {
    let mut h = Harness::new();
    let id = h.e.submit(Command::send_pdu(16, PDU));
    h.flush();
    h.feed(b"\r\n> ");
    h.flush();
    // A reply only AT+CSQ gets: whatever the modem answers next is shifted.
    h.feed(b"\r\n+CSQ: 20,99\r\n");
    let done = h.done();
    assert_eq!(
        done,
        [(id, Outcome::Desync(Stage::Result { after_pdu: true }))]
    );
    assert!(
        matches!(send_result(&done[0].1), SendResult::Failed(f) if f.class == FailureClass::Ambiguous),
        "in doubt, never recorded with a reference that may not be its own"
    );
}

#[test]
fn a_reboot_mid_session_fails_the_command_and_resynchronises() {
    let mut h = Harness::opened();
    h.sync();
    h.e.watch_reboots(true);
    let _ = h.events();
    let id = h.e.submit(Command::send_pdu(16, PDU));
    h.flush();
    h.feed(b"\r\n> ");
    h.flush();
    // Power dip: the modem boots again. Its boot lines and a stale OK follow.
    h.feed(b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\nSMS Ready\r\n\r\nOK\r\n");
    let ev = h.events();
    assert!(
        ev.contains(&Event::Rebooted { line: "RDY".into() }),
        "{ev:?}"
    );
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::Rebooted { .. }))
            .count(),
        1,
        "one reboot, not one per boot line: {ev:?}"
    );
    assert!(ev.contains(&Event::Done {
        id,
        outcome: Outcome::Desync(Stage::Result { after_pdu: true })
    }));
    let next = h.e.submit(Command::new("AT+CSQ"));
    assert_eq!(h.flush(), "\x1b\r");
    h.advance(Duration::from_millis(300));
    assert_eq!(h.flush(), "AT+CSCS?\r");
    h.feed(b"\r\n+CSCS: \"IRA\"\r\n\r\nOK\r\n");
    h.advance(Duration::from_millis(300));
    assert_eq!(h.flush(), "AT+CSQ\r");
    h.feed(b"\r\n+CSQ: 18,99\r\n\r\nOK\r\n");
    let done = h.done();
    assert_eq!(
        (done[0].0, lines(&done[0].1)),
        (next, vec!["+CSQ: 18,99".into()])
    );
}

#[test]
fn every_reboot_announcement_is_one_and_huawei_boot_is_noise() {
    for line in [
        "RDY",
        "SMS Ready",
        "+QIND: SMS DONE",
        "^SYSSTART",
        "+WIND: 4",
        "+CPIN: READY",
    ] {
        let mut h = Harness::new();
        h.e.watch_reboots(true);
        h.e.submit(Command::new("AT+CSQ"));
        h.flush();
        h.feed(format!("\r\n{line}\r\n").as_bytes());
        assert!(
            h.events().contains(&Event::Rebooted { line: line.into() }),
            "{line}"
        );
    }
    // ^BOOT is Huawei's periodic noise, not a restart; nor is a boot line while
    // initialising (watch off), nor +CPIN: READY when AT+CPIN? asked for it.
    let mut h = Harness::new();
    h.e.watch_reboots(true);
    let csq = h.e.submit(Command::new("AT+CSQ"));
    h.flush();
    h.feed(b"\r\n^BOOT:35323129,0,0,0,26\r\n\r\n+CSQ: 20,99\r\n\r\nOK\r\n");
    assert_eq!(lines(&h.done()[0].1), ["+CSQ: 20,99"]);
    let _ = csq;
    let cpin = h.e.submit(Command::new("AT+CPIN?"));
    h.flush();
    h.feed(b"\r\n+CPIN: READY\r\n\r\nOK\r\n");
    let done = h.done();
    assert_eq!(
        (done[0].0, lines(&done[0].1)),
        (cpin, vec!["+CPIN: READY".into()])
    );
    let mut h = Harness::new();
    h.e.submit(Command::new("AT+CSQ"));
    h.flush();
    h.feed(b"\r\nRDY\r\n\r\n+CSQ: 20,99\r\n\r\nOK\r\n");
    assert!(!h
        .events()
        .iter()
        .any(|e| matches!(e, Event::Rebooted { .. })));
}

#[test]
fn a_modem_that_just_booted_may_still_say_it_is_ready_but_rdy_is_a_restart() {
    let mut h = Harness::new();
    h.e.watch_reboots(true);
    h.e.expect_boot_lines(h.now + Duration::from_secs(30));
    h.feed(b"\r\nSMS Ready\r\n\r\n+CPIN: READY\r\n");
    assert!(
        !h.events()
            .iter()
            .any(|e| matches!(e, Event::Rebooted { .. })),
        "late readiness lines of the boot just seen"
    );
    h.feed(b"\r\nRDY\r\n");
    assert!(h.events().contains(&Event::Rebooted { line: "RDY".into() }));
}
