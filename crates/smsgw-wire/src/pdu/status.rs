//! TP-Status of a status report (TS 23.040 §9.2.3.15): what happened to a sent
//! part, and whether that is the last word (final) or the SMSC is still trying.

use serde::Serialize;

/// The class of a TP-Status value, which decides what the daemon records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusClass {
    /// 0x00-0x1F: delivered (or handed over): final success.
    Completed,
    /// 0x20-0x3F: temporary error, the SMSC is still trying: not final.
    TemporaryStillTrying,
    /// 0x40-0x5F: permanent error: final failure.
    Permanent,
    /// 0x60-0x7F: temporary error, the SMSC has stopped trying: final failure.
    TemporaryStopped,
    /// 0x80-0xFF: reserved; treated as a final failure.
    Reserved,
}

/// A TP-Status octet with its meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TpStatus {
    #[serde(serialize_with = "super::serde_hex::u8")]
    pub raw: u8,
    pub class: StatusClass,
    pub meaning: &'static str,
    /// No further report will come for this part.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The part reached the recipient.
    pub delivered: bool,
}

impl TpStatus {
    pub fn new(raw: u8) -> TpStatus {
        let class = match raw {
            0x00..=0x1F => StatusClass::Completed,
            0x20..=0x3F => StatusClass::TemporaryStillTrying,
            0x40..=0x5F => StatusClass::Permanent,
            0x60..=0x7F => StatusClass::TemporaryStopped,
            _ => StatusClass::Reserved,
        };
        TpStatus {
            raw,
            class,
            meaning: meaning(raw),
            is_final: class != StatusClass::TemporaryStillTrying,
            delivered: class == StatusClass::Completed,
        }
    }
}

fn meaning(raw: u8) -> &'static str {
    match raw {
        0x00 => "received by SME",
        0x01 => "forwarded by SC to SME, SC cannot confirm delivery",
        0x02 => "replaced by SC",
        0x03..=0x0F => "reserved (completed)",
        0x10..=0x1F => "SC-specific (completed)",
        0x20 | 0x60 => "congestion",
        0x21 | 0x61 => "SME busy",
        0x22 | 0x62 => "no response from SME",
        0x23 | 0x63 => "service rejected",
        0x24 | 0x44 | 0x64 => "quality of service not available",
        0x25 | 0x65 => "error in SME",
        0x26..=0x2F => "reserved (temporary, still trying)",
        0x30..=0x3F => "SC-specific (temporary, still trying)",
        0x40 => "remote procedure error",
        0x41 => "incompatible destination",
        0x42 => "connection rejected by SME",
        0x43 => "not obtainable",
        0x45 => "no interworking available",
        0x46 => "SM validity period expired",
        0x47 => "SM deleted by originating SME",
        0x48 => "SM deleted by SC administration",
        0x49 => "SM does not exist",
        0x4A..=0x4F => "reserved (permanent)",
        0x50..=0x5F => "SC-specific (permanent)",
        0x66..=0x6F => "reserved (temporary, SC stopped trying)",
        0x70..=0x7F => "SC-specific (temporary, SC stopped trying)",
        _ => "reserved",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_finality() {
        assert!(TpStatus::new(0x00).delivered);
        let s = TpStatus::new(0x30);
        assert_eq!(s.class, StatusClass::TemporaryStillTrying);
        assert!(!s.is_final);
        // 0x50 is permanent (some libraries call it temporary).
        assert_eq!(TpStatus::new(0x50).class, StatusClass::Permanent);
        assert_eq!(TpStatus::new(0x46).meaning, "SM validity period expired");
        let s = TpStatus::new(0x62);
        assert!(s.is_final && !s.delivered);
        assert_eq!(TpStatus::new(0xFF).class, StatusClass::Reserved);
    }
}
