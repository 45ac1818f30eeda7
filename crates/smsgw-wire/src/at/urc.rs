//! Unsolicited result codes: lines a modem sends on its own, at any time, even in
//! the middle of a command's response. They are recognised by a registry of
//! patterns and taken out of the reply stream before replies are parsed.
//!
//! Why a registry: gammu-smsd users report loops on Huawei `^RSSI`/`^BOOT` lines;
//! a line a parser does not expect must never be mistaken for a reply. Vendor
//! profiles add patterns as data ([`Registry::add`]); a pattern whose kind is
//! [`UrcKind::Noise`] swallows the line.

use serde::Serialize;

/// What a recognised unsolicited line means to the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UrcKind {
    /// `+CMTI: "SM",3`: a message was stored.
    NewMessage,
    /// `+CMT: ,23` + PDU line: a message routed directly.
    Message,
    /// `+CDS: 24` + PDU line: a status report routed directly.
    StatusReport,
    /// `+CDSI: "SR",1`: a status report was stored.
    StatusReportStored,
    /// `+CREG:`/`+CGREG:`/`+CEREG:` registration change.
    Registration,
    /// `+CPIN: READY` / `NOT READY` during boot.
    SimState,
    /// `RING`, `+CRING`, `+CLIP`, `NO CARRIER`: calls (not answered).
    Call,
    /// A boot or readiness marker (`RDY`, `SMS Ready`, `+QIND: SMS DONE`, `^SYSSTART`, `+WIND: 4`).
    Ready,
    /// Known noise (`^RSSI`, `^BOOT`, `+ZPASR`...): swallowed.
    Noise,
}

/// A decoded unsolicited result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "urc", rename_all = "snake_case")]
pub enum Urc {
    NewMessage {
        mem: String,
        index: u32,
    },
    /// The PDU in hex; `length` is the TPDU length the modem announced.
    Message {
        length: Option<usize>,
        pdu: String,
    },
    StatusReport {
        length: Option<usize>,
        pdu: String,
    },
    StatusReportStored {
        mem: String,
        index: u32,
    },
    Registration {
        stat: u8,
    },
    SimState {
        state: String,
    },
    Call {
        line: String,
    },
    Ready {
        line: String,
    },
    Noise {
        line: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Prefix(String),
    Exact(String),
}

impl Pattern {
    fn matches(&self, line: &str) -> bool {
        match self {
            Pattern::Prefix(p) => line.starts_with(p.as_str()),
            Pattern::Exact(e) => line == e,
        }
    }
}

/// The patterns in force for one modem.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Searched first to last; vendor additions are put in front, so a vendor's
    /// pattern wins over a generic one.
    patterns: Vec<(Pattern, UrcKind)>,
}

/// The generic table: 27.005/27.007 URCs and the vendor noise seen in practice
/// (reference/modems.md §3).
const STANDARD: &[(&str, UrcKind)] = &[
    ("+CMTI:", UrcKind::NewMessage),
    ("+CMT:", UrcKind::Message),
    ("+CDSI:", UrcKind::StatusReportStored),
    ("+CDS:", UrcKind::StatusReport),
    ("+CREG:", UrcKind::Registration),
    ("+CGREG:", UrcKind::Registration),
    ("+CEREG:", UrcKind::Registration),
    ("+CPIN:", UrcKind::SimState),
    ("=RING", UrcKind::Call),
    ("+CRING:", UrcKind::Call),
    ("+CLIP:", UrcKind::Call),
    ("=NO CARRIER", UrcKind::Call),
    ("+CUSD:", UrcKind::Noise),
    ("=RDY", UrcKind::Ready),
    ("=Call Ready", UrcKind::Ready),
    ("=SMS Ready", UrcKind::Ready),
    ("=SMS DONE", UrcKind::Ready),
    ("=PB DONE", UrcKind::Noise),
    ("+QIND: SMS DONE", UrcKind::Ready),
    ("+QIND:", UrcKind::Noise),
    ("+QUSIM:", UrcKind::Noise),
    ("+CFUN:", UrcKind::Noise),
    ("^SYSSTART", UrcKind::Ready),
    ("+WIND: 4", UrcKind::Ready),
    ("+WIND:", UrcKind::Noise),
    ("^RSSI:", UrcKind::Noise),
    ("^BOOT:", UrcKind::Noise),
    ("^MODE:", UrcKind::Noise),
    ("^SIMST:", UrcKind::Noise),
    ("^SRVST:", UrcKind::Noise),
    ("^HCSQ:", UrcKind::Noise),
    ("^DSFLOWRPT:", UrcKind::Noise),
    ("^CSNR:", UrcKind::Noise),
    ("^STIN:", UrcKind::Noise),
    ("^NWTIME:", UrcKind::Noise),
    ("^RSSILVL:", UrcKind::Noise),
    ("^HRSSILVL:", UrcKind::Noise),
    ("^NDISSTAT:", UrcKind::Noise),
    ("^ORIG:", UrcKind::Noise),
    ("^CONF:", UrcKind::Noise),
    ("^CONN:", UrcKind::Noise),
    ("^CEND:", UrcKind::Noise),
    ("+ZPASR:", UrcKind::Noise),
    ("+ZDONR:", UrcKind::Noise),
    ("+ZUSIMR:", UrcKind::Noise),
    ("+ZPSTM:", UrcKind::Noise),
    ("+ZEND", UrcKind::Noise),
    ("+PACSP", UrcKind::Noise),
    ("^SIND:", UrcKind::Noise),
    ("+CIEV:", UrcKind::Noise),
    ("+CSQN:", UrcKind::Noise),
    ("+CMTE:", UrcKind::Noise),
    ("=NORMAL POWER DOWN", UrcKind::Noise),
    ("UNDER-VOLTAGE", UrcKind::Noise),
    ("OVER-VOLTAGE", UrcKind::Noise),
    ("=POWERED DOWN", UrcKind::Noise),
    ("+QGPSURC:", UrcKind::Noise),
    ("+QIURC:", UrcKind::Noise),
    ("#STN:", UrcKind::Noise),
];

impl Default for Registry {
    fn default() -> Self {
        Self::standard()
    }
}

impl Registry {
    /// The generic table.
    pub fn standard() -> Registry {
        Registry {
            patterns: STANDARD
                .iter()
                .map(|&(p, k)| (parse_pattern(p), k))
                .collect(),
        }
    }

    /// Adds a vendor pattern in front of the others. `pattern` is a prefix, or an
    /// exact line when written `=LINE`.
    pub fn add(&mut self, pattern: &str, kind: UrcKind) {
        self.patterns.insert(0, (parse_pattern(pattern), kind));
    }

    /// The kind of an unsolicited line, if the registry knows it.
    pub fn classify(&self, line: &str) -> Option<UrcKind> {
        self.patterns
            .iter()
            .find(|(p, _)| p.matches(line))
            .map(|&(_, k)| k)
    }
}

fn parse_pattern(p: &str) -> Pattern {
    match p.strip_prefix('=') {
        Some(exact) => Pattern::Exact(exact.to_string()),
        None => Pattern::Prefix(p.to_string()),
    }
}

/// Builds the URC for a one-line kind, or `None` when the line is malformed
/// (reported as an unknown line instead: never guessed).
pub fn parse_line(kind: UrcKind, line: &str) -> Option<Urc> {
    let args = line.split_once(':').map(|(_, a)| a.trim()).unwrap_or("");
    Some(match kind {
        UrcKind::NewMessage | UrcKind::StatusReportStored => {
            let (mem, index) = args.rsplit_once(',')?;
            let mem = mem.trim().trim_matches('"').to_string();
            let index = index.trim().parse().ok()?;
            if kind == UrcKind::NewMessage {
                Urc::NewMessage { mem, index }
            } else {
                Urc::StatusReportStored { mem, index }
            }
        }
        UrcKind::Registration => {
            // Unsolicited form: +CREG: <stat>[,<lac>,<ci>[,<act>]].
            let stat = args.split(',').next()?.trim().parse().ok()?;
            Urc::Registration { stat }
        }
        UrcKind::SimState => Urc::SimState {
            state: args.to_string(),
        },
        UrcKind::Call => Urc::Call { line: line.into() },
        UrcKind::Ready => Urc::Ready { line: line.into() },
        UrcKind::Noise => Urc::Noise { line: line.into() },
        UrcKind::Message | UrcKind::StatusReport => return None,
    })
}

/// The announced TPDU length of a `+CMT: [<alpha>],<length>` or `+CDS: <length>`
/// header (ZTE writes `+CDS: ,<length>`): the last comma-separated number.
pub fn two_line_length(line: &str) -> Option<usize> {
    let args = line.split_once(':')?.1;
    args.rsplit(',').next()?.trim().parse().ok()
}

/// Whether a line can be the PDU line of a two-line URC or of `+CMGR`/`+CMGL`.
pub fn is_hex_line(line: &str) -> bool {
    !line.is_empty() && line.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_standard_and_vendor_lines() {
        let r = Registry::standard();
        assert_eq!(r.classify("+CMTI: \"SM\",26"), Some(UrcKind::NewMessage));
        assert_eq!(
            r.classify("+CDSI: \"SR\",1"),
            Some(UrcKind::StatusReportStored)
        );
        assert_eq!(r.classify("+CDS: 24"), Some(UrcKind::StatusReport));
        assert_eq!(r.classify("^RSSI:14"), Some(UrcKind::Noise));
        assert_eq!(r.classify("^BOOT:35323129,0,0,0,26"), Some(UrcKind::Noise));
        assert_eq!(r.classify("+ZPASR: \"UMTS\""), Some(UrcKind::Noise));
        assert_eq!(r.classify("+QIND: SMS DONE"), Some(UrcKind::Ready));
        assert_eq!(r.classify("RING"), Some(UrcKind::Call));
        assert_eq!(r.classify("RINGO"), None);
        assert_eq!(r.classify("+CMGS: 3"), None);
        assert_eq!(r.classify("OK"), None);
    }

    #[test]
    fn vendor_pattern_wins() {
        let mut r = Registry::standard();
        r.add("+CMTI: \"SR\"", UrcKind::Noise);
        assert_eq!(r.classify("+CMTI: \"SR\",1"), Some(UrcKind::Noise));
        assert_eq!(r.classify("+CMTI: \"SM\",1"), Some(UrcKind::NewMessage));
        r.add("=MY READY", UrcKind::Ready);
        assert_eq!(r.classify("MY READY"), Some(UrcKind::Ready));
    }

    #[test]
    fn parses_one_line_urcs() {
        assert_eq!(
            parse_line(UrcKind::NewMessage, "+CMTI: \"SM\",26"),
            Some(Urc::NewMessage {
                mem: "SM".into(),
                index: 26
            })
        );
        assert_eq!(
            parse_line(UrcKind::StatusReportStored, "+CDSI:\"SR\", 1"),
            Some(Urc::StatusReportStored {
                mem: "SR".into(),
                index: 1
            })
        );
        assert_eq!(
            parse_line(UrcKind::Registration, "+CREG: 5"),
            Some(Urc::Registration { stat: 5 })
        );
        assert_eq!(
            parse_line(UrcKind::Registration, "+CREG: 1,\"5E25\",\"605F\""),
            Some(Urc::Registration { stat: 1 })
        );
        assert_eq!(parse_line(UrcKind::NewMessage, "+CMTI: garbage"), None);
    }

    #[test]
    fn two_line_headers() {
        assert_eq!(two_line_length("+CMT: ,23"), Some(23));
        assert_eq!(two_line_length("+CMT: \"+1234567890123\",22"), Some(22));
        assert_eq!(two_line_length("+CDS: 24"), Some(24));
        assert_eq!(two_line_length("+CDS:25"), Some(25));
        assert_eq!(two_line_length("+CDS: ,24"), Some(24));
        assert!(is_hex_line("0791AB"));
        assert!(!is_hex_line("OK"));
    }
}
