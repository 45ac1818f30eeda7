//! What the outcome of one `AT+CMGS` means: sent (with its message reference), or
//! a failure classified once, here, for the dispatcher to act on.
//!
//! The classes decide everything downstream: a temporary failure is retried with
//! backoff; a permanent one fails the message at once; a modem failure sends the
//! message back without using an attempt and takes the modem out of rotation; an
//! ambiguous one (the PDU may have reached the network) is never blindly resent.
//! Codes and their meanings: 27.005 §3.2.5, 24.011 Annex E, 23.040 §9.2.3.22, and
//! the daemons' retry lists collected in reference/modems.md §1.6.

use super::engine::{Outcome, Stage};
use super::parse;
use super::result::Final;
use serde::Serialize;

/// Who is at fault, which decides what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Network congestion, SIM busy...: retry this message later.
    Temporary,
    /// Bad number, barred destination, a PDU the network refuses: retrying cannot help.
    Permanent,
    /// The modem or its SIM cannot send anything (no SMSC, PIN, SIM failure, no
    /// answer before the PDU): the message goes back unharmed, the modem is suspect.
    Modem,
    /// The PDU may have reached the network (timeout or error after Ctrl-Z).
    Ambiguous,
}

/// A classified send failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SendFailure {
    pub class: FailureClass,
    /// For `last_error` and logs.
    pub reason: String,
}

/// The result of one part's `AT+CMGS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SendResult {
    /// The SMSC accepted the part; `mr` is `None` if the modem said OK without `+CMGS:`.
    Sent {
        mr: Option<u8>,
    },
    Failed(SendFailure),
}

fn fail(class: FailureClass, reason: impl Into<String>) -> SendResult {
    SendResult::Failed(SendFailure {
        class,
        reason: reason.into(),
    })
}

/// Classifies the outcome of an `AT+CMGS` command.
pub fn send_result(outcome: &Outcome) -> SendResult {
    use FailureClass::*;
    match outcome {
        Outcome::Response(r) => match &r.result {
            Final::Ok if r.pdu_written => SendResult::Sent {
                mr: parse::cmgs(&r.lines),
            },
            Final::Cms(code) => {
                let class = match code.number() {
                    Some(n) => cms_class(n),
                    None if r.pdu_written => Ambiguous,
                    None => Temporary,
                };
                fail(
                    class,
                    format!(
                        "modem answered +CMS ERROR: {code}{}",
                        cms_meaning(code.number())
                    ),
                )
            }
            Final::Cme(code) => {
                let class = code.number().map_or(Temporary, cme_class);
                fail(class, format!("modem answered +CME ERROR: {code}"))
            }
            // Some modems answer a plain ERROR although the message was queued
            // (gammu smsd: "message might still be sent"): after the PDU it is ambiguous.
            Final::Error | Final::NotSupported if r.pdu_written => fail(
                Ambiguous,
                format!("modem answered {} after the PDU was written", r.result),
            ),
            other => fail(Modem, format!("modem refused AT+CMGS: {other}")),
        },
        Outcome::Timeout(Stage::Result { after_pdu: true }) => fail(
            Ambiguous,
            "no answer after the PDU was sent: the message may have reached the network",
        ),
        Outcome::Timeout(_) => fail(
            Modem,
            "modem did not answer AT+CMGS (no prompt): nothing was sent",
        ),
        Outcome::Aborted(Stage::Result { after_pdu: true }) => fail(
            Ambiguous,
            "modem disconnected after the PDU was sent: the message may have reached the network",
        ),
        Outcome::Aborted(_) => fail(
            Modem,
            "modem disconnected before the PDU was sent: nothing was sent",
        ),
        Outcome::Desync(Stage::Result { after_pdu: true }) => fail(
            Ambiguous,
            "the modem's answer after the PDU was out of step (another command's, or a reboot): \
             the message may have reached the network",
        ),
        Outcome::Desync(_) => fail(
            Modem,
            "the modem's answer was out of step before the PDU was sent: nothing was sent",
        ),
    }
}

/// Class of a `+CMS ERROR` code.
pub fn cms_class(code: u16) -> FailureClass {
    use FailureClass::*;
    match code {
        // Destination or message problems: this message can never go.
        1
        | 21
        | 28
        | 29
        | 30
        | 69
        | 95..=99
        | 128..=130
        | 143..=145
        | 159..=161
        | 175
        | 176
        | 195
        | 196
        | 198
        | 199
        | 304
        | 305 => Permanent,
        // The SIM's account or the modem's state: nothing can go through this modem.
        8 | 10 | 50 | 193 | 300 | 302 | 303 | 310..=313 | 315..=318 | 320 | 330 => Modem,
        // The SMSC may have it already (network timeout; Wavecom lower-layer failure;
        // duplicate rejected means an earlier copy was accepted).
        197 | 332 | 513 => Ambiguous,
        _ => Temporary,
    }
}

/// Class of a `+CME ERROR` code during a send.
pub fn cme_class(code: u16) -> FailureClass {
    use FailureClass::*;
    match code {
        3 | 4 | 5 | 10..=13 | 15..=18 | 20 | 23 => Modem,
        _ => Temporary,
    }
}

fn cms_meaning(code: Option<u16>) -> &'static str {
    match code {
        Some(1) => " (unassigned number)",
        Some(8) => " (operator determined barring)",
        Some(10) => " (call barred)",
        Some(21) => " (short message transfer rejected)",
        Some(27) => " (destination out of service)",
        Some(28) => " (unidentified subscriber)",
        Some(30) => " (unknown subscriber)",
        Some(38) => " (network out of order)",
        Some(41) => " (temporary failure)",
        Some(42) => " (congestion)",
        Some(50) => " (SMS not subscribed on this SIM)",
        Some(192) => " (SMSC busy)",
        Some(193) => " (no SMSC subscription)",
        Some(195) => " (invalid destination address)",
        Some(196) => " (destination barred)",
        Some(300) => " (modem failure)",
        Some(304) => " (invalid PDU: encoder or length bug)",
        Some(310) => " (SIM not inserted)",
        Some(311) => " (SIM PIN required)",
        Some(314) => " (SIM busy)",
        Some(322) => " (SIM memory full)",
        Some(330) => " (SMSC address unknown: set smsc in the config)",
        Some(331) => " (no network service)",
        Some(332) => " (network timeout)",
        Some(500) => " (unknown error)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::at::{ErrorCode, Response};

    fn resp(result: Final, lines: &[&str], pdu_written: bool) -> Outcome {
        Outcome::Response(Response {
            lines: lines.iter().map(|s| s.to_string()).collect(),
            result,
            pdu_written,
        })
    }

    fn class(o: &Outcome) -> Option<FailureClass> {
        match send_result(o) {
            SendResult::Failed(f) => Some(f.class),
            SendResult::Sent { .. } => None,
        }
    }

    #[test]
    fn sent_with_reference() {
        assert_eq!(
            send_result(&resp(Final::Ok, &["+CMGS: 64"], true)),
            SendResult::Sent { mr: Some(64) }
        );
        assert_eq!(
            send_result(&resp(Final::Ok, &["+CMGS: 1,"], true)),
            SendResult::Sent { mr: Some(1) }
        );
    }

    #[test]
    fn failure_classes() {
        use FailureClass::*;
        let cms = |n| resp(Final::Cms(ErrorCode::Code(n)), &[], true);
        assert_eq!(class(&cms(1)), Some(Permanent));
        assert_eq!(class(&cms(42)), Some(Temporary));
        assert_eq!(class(&cms(330)), Some(Modem));
        assert_eq!(class(&cms(332)), Some(Ambiguous));
        assert_eq!(class(&cms(999)), Some(Temporary));
        assert_eq!(
            class(&resp(
                Final::Cme(ErrorCode::Text("SIM busy".into())),
                &[],
                false
            )),
            Some(Temporary)
        );
        assert_eq!(
            class(&resp(Final::Cme(ErrorCode::Code(11)), &[], false)),
            Some(Modem)
        );
        assert_eq!(class(&resp(Final::Error, &[], true)), Some(Ambiguous));
        assert_eq!(class(&resp(Final::Error, &[], false)), Some(Modem));
        assert_eq!(class(&Outcome::Timeout(Stage::Prompt)), Some(Modem));
        assert_eq!(
            class(&Outcome::Timeout(Stage::Result { after_pdu: true })),
            Some(Ambiguous)
        );
        assert_eq!(class(&Outcome::Aborted(Stage::Queued)), Some(Modem));
        assert_eq!(
            class(&Outcome::Aborted(Stage::Result { after_pdu: true })),
            Some(Ambiguous)
        );
    }

    #[test]
    fn reasons_are_for_people() {
        let SendResult::Failed(f) =
            send_result(&resp(Final::Cms(ErrorCode::Code(330)), &[], false))
        else {
            panic!()
        };
        assert_eq!(
            f.reason,
            "modem answered +CMS ERROR: 330 (SMSC address unknown: set smsc in the config)"
        );
    }
}
