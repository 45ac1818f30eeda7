//! Decoding TPDUs: SMS-DELIVER (incoming), SMS-STATUS-REPORT (delivery reports)
//! and SMS-SUBMIT (stored drafts, tests, diagnostics).
//!
//! Strict where a wrong guess would corrupt data (non-BCD dates, addresses longer
//! than allowed, a header longer than its user data: errors naming the field);
//! lenient where real modems are known to be slightly wrong (truncated user data,
//! octets beyond UDL, SIM `FF` padding, non-BCD time zones): decoded, and each
//! leniency recorded in [`Decoded::warnings`].

use super::address::{decode_smsc, SmscField};
use super::dcs::{Alphabet, Dcs};
use super::status::TpStatus;
use super::time::{relative_vp_minutes, Timestamp};
use super::udh::{self, Concat, UdhElement};
use super::{from_hex, gsm7, serde_hex, to_hex, ucs2, Address, DecodeError, Reader};
use serde::Serialize;

/// Where the TPDU starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Guess: try with an SMSC field first, then as a bare TPDU; prefer a clean decode.
    Auto,
    /// The PDU starts with an SMSC field (`+CMGR`, `+CMGL`, `+CMT`, `+CDS` on most modems).
    WithSmsc,
    /// The PDU is a bare TPDU (nRF91 `+CDS`, "old" modems).
    TpduOnly,
    /// The modem announced the TPDU length (the `<length>` of `+CMGR: 1,,25`): the
    /// SMSC field is whatever precedes it; falls back to `Auto` when the numbers do not fit.
    TpduLen(usize),
}

/// The SMSC field as found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Smsc {
    /// No SMSC field at all (a bare TPDU).
    Absent,
    /// `00`: the modem's configured SMSC is used.
    Empty,
    /// A field with a type-of-address octet and no digits.
    TypeOnly {
        #[serde(serialize_with = "serde_hex::u8")]
        toa: u8,
    },
    /// An SMSC number.
    Address(Address),
}

/// A decoded PDU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decoded {
    pub smsc: Smsc,
    #[serde(flatten)]
    pub tpdu: Tpdu,
    /// Octets of the TPDU (SMSC field excluded): what `AT+CMGS=<len>` takes.
    pub tpdu_len: usize,
    /// Leniencies applied while decoding, for people (empty for a clean PDU).
    pub warnings: Vec<String>,
}

/// The three TPDU types smsgw meets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Tpdu {
    #[serde(rename = "SMS-DELIVER")]
    Deliver(Deliver),
    #[serde(rename = "SMS-SUBMIT")]
    Submit(Submit),
    #[serde(rename = "SMS-STATUS-REPORT")]
    StatusReport(StatusReport),
}

/// An incoming message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deliver {
    #[serde(serialize_with = "serde_hex::u8")]
    pub first_octet: u8,
    /// TP-MMS = 0: the SMSC has more messages for this phone.
    pub more_messages_waiting: bool,
    pub loop_prevention: bool,
    /// The sender asked for a status report.
    pub status_report_indication: bool,
    pub reply_path: bool,
    pub originator: Address,
    #[serde(serialize_with = "serde_hex::u8")]
    pub pid: u8,
    pub dcs: Dcs,
    /// When the SMSC received it.
    pub scts: Timestamp,
    pub user_data: UserData,
}

/// An outgoing message (as stored by a phone, or as smsgw built it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Submit {
    #[serde(serialize_with = "serde_hex::u8")]
    pub first_octet: u8,
    pub reject_duplicates: bool,
    pub status_report_request: bool,
    pub reply_path: bool,
    /// TP-MR as written in the PDU (modems usually replace it with their own counter).
    pub message_reference: u8,
    pub destination: Address,
    #[serde(serialize_with = "serde_hex::u8")]
    pub pid: u8,
    pub dcs: Dcs,
    pub validity: Validity,
    pub user_data: UserData,
}

/// TP-VP in its three forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum Validity {
    None,
    Relative {
        #[serde(serialize_with = "serde_hex::u8")]
        octet: u8,
        minutes: u32,
    },
    Absolute {
        until: Timestamp,
    },
    Enhanced {
        #[serde(serialize_with = "serde_hex::bytes")]
        octets: Vec<u8>,
    },
}

/// A delivery report for a part smsgw sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    #[serde(serialize_with = "serde_hex::u8")]
    pub first_octet: u8,
    pub more_messages_waiting: bool,
    pub loop_prevention: bool,
    /// TP-SRQ: the report is about an SMS-COMMAND rather than an SMS-SUBMIT.
    pub about_command: bool,
    /// The TP-MR that `+CMGS: <mr>` returned for the part.
    pub message_reference: u8,
    pub recipient: Address,
    /// When the SMSC received the part.
    pub scts: Timestamp,
    /// When the part was delivered, or the SMSC's last attempt.
    pub discharge_time: Timestamp,
    pub status: TpStatus,
    /// TP-PI, when the optional tail is present.
    #[serde(serialize_with = "serde_hex::opt_u8")]
    pub pi: Option<u8>,
    #[serde(serialize_with = "serde_hex::opt_u8")]
    pub pid: Option<u8>,
    pub dcs: Option<Dcs>,
    pub user_data: Option<UserData>,
}

/// User data: header elements and the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserData {
    /// TP-UDL as received (septets for GSM-7, octets otherwise).
    pub udl: u8,
    pub udh: Vec<UdhElement>,
    #[serde(flatten)]
    pub body: Body,
}

/// The body: text for GSM-7 and UCS2, raw octets for 8-bit data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    Text(String),
    #[serde(rename = "data_hex", serialize_with = "serde_hex::bytes")]
    Data(Vec<u8>),
}

impl UserData {
    /// The concatenation element, if the message is one part of several.
    pub fn concat(&self) -> Option<Concat> {
        udh::concat(&self.udh)
    }

    /// The text, if the body is text.
    pub fn text(&self) -> Option<&str> {
        match &self.body {
            Body::Text(t) => Some(t),
            Body::Data(_) => None,
        }
    }
}

/// Decodes a hex PDU.
pub fn decode_hex(hex: &str, layout: Layout) -> Result<Decoded, DecodeError> {
    decode(&from_hex(hex)?, layout)
}

/// Decodes PDU octets.
pub fn decode(bytes: &[u8], layout: Layout) -> Result<Decoded, DecodeError> {
    match layout {
        Layout::WithSmsc => decode_at(bytes, true),
        Layout::TpduOnly => decode_at(bytes, false),
        Layout::TpduLen(n) if bytes.len() == n => decode_at(bytes, false),
        Layout::TpduLen(n) if bytes.len() > n && bytes[0] as usize + 1 == bytes.len() - n => {
            decode_at(bytes, true)
        }
        Layout::TpduLen(_) | Layout::Auto => {
            let with = decode_at(bytes, true);
            if matches!(&with, Ok(d) if d.warnings.is_empty()) {
                return with;
            }
            match (with, decode_at(bytes, false)) {
                (Ok(a), Ok(b)) if b.warnings.len() < a.warnings.len() => Ok(b),
                (Ok(a), _) => Ok(a),
                (Err(_), Ok(b)) => Ok(b),
                (Err(a), Err(_)) => Err(a),
            }
        }
    }
}

fn decode_at(bytes: &[u8], with_smsc: bool) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(bytes);
    let smsc = if with_smsc {
        match decode_smsc(&mut r)? {
            SmscField::Empty => Smsc::Empty,
            SmscField::TypeOnly(toa) => Smsc::TypeOnly { toa },
            SmscField::Address(a) => Smsc::Address(a),
        }
    } else {
        Smsc::Absent
    };
    let tpdu_len = r.remaining();
    let mut warnings = Vec::new();
    let fo = r.u8("first octet")?;
    let tpdu = match fo & 0x03 {
        0b00 => Tpdu::Deliver(decode_deliver(fo, &mut r, &mut warnings)?),
        0b01 => Tpdu::Submit(decode_submit(fo, &mut r, &mut warnings)?),
        0b10 => Tpdu::StatusReport(decode_status_report(fo, &mut r, &mut warnings)?),
        _ => {
            return Err(DecodeError::invalid(
                "first octet",
                format!("{fo:02X}: message type 3 is reserved"),
            ))
        }
    };
    Ok(Decoded {
        smsc,
        tpdu,
        tpdu_len,
        warnings,
    })
}

fn decode_deliver(
    fo: u8,
    r: &mut Reader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Deliver, DecodeError> {
    let originator = Address::decode_tp(r, "oa")?;
    let pid = r.u8("pid")?;
    let dcs = Dcs::parse(r.u8("dcs")?);
    let scts = Timestamp::decode(r, "scts")?;
    note_timestamp(&scts, "scts", warnings);
    let udhi = fo & 0x40 != 0;
    let user_data = decode_user_data(r, &dcs, udhi, warnings)?;
    note_trailing(r, warnings);
    Ok(Deliver {
        first_octet: fo,
        more_messages_waiting: fo & 0x04 == 0,
        loop_prevention: fo & 0x08 != 0,
        status_report_indication: fo & 0x20 != 0,
        reply_path: fo & 0x80 != 0,
        originator,
        pid,
        dcs,
        scts,
        user_data,
    })
}

fn decode_submit(
    fo: u8,
    r: &mut Reader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Submit, DecodeError> {
    let message_reference = r.u8("mr")?;
    let destination = Address::decode_tp(r, "da")?;
    let pid = r.u8("pid")?;
    let dcs = Dcs::parse(r.u8("dcs")?);
    let validity = match (fo >> 3) & 0x03 {
        0b00 => Validity::None,
        0b10 => {
            let octet = r.u8("vp")?;
            Validity::Relative {
                octet,
                minutes: relative_vp_minutes(octet),
            }
        }
        0b11 => Validity::Absolute {
            until: Timestamp::decode(r, "vp")?,
        },
        _ => Validity::Enhanced {
            octets: r.take(7, "vp")?.to_vec(),
        },
    };
    let user_data = decode_user_data(r, &dcs, fo & 0x40 != 0, warnings)?;
    note_trailing(r, warnings);
    Ok(Submit {
        first_octet: fo,
        reject_duplicates: fo & 0x04 != 0,
        status_report_request: fo & 0x20 != 0,
        reply_path: fo & 0x80 != 0,
        message_reference,
        destination,
        pid,
        dcs,
        validity,
        user_data,
    })
}

fn decode_status_report(
    fo: u8,
    r: &mut Reader<'_>,
    warnings: &mut Vec<String>,
) -> Result<StatusReport, DecodeError> {
    let message_reference = r.u8("mr")?;
    let recipient = Address::decode_tp(r, "ra")?;
    let scts = Timestamp::decode(r, "scts")?;
    note_timestamp(&scts, "scts", warnings);
    let discharge_time = Timestamp::decode(r, "dt")?;
    note_timestamp(&discharge_time, "dt", warnings);
    let status = TpStatus::new(r.u8("st")?);
    let mut sr = StatusReport {
        first_octet: fo,
        more_messages_waiting: fo & 0x04 == 0,
        loop_prevention: fo & 0x08 != 0,
        about_command: fo & 0x20 != 0,
        message_reference,
        recipient,
        scts,
        discharge_time,
        status,
        pi: None,
        pid: None,
        dcs: None,
        user_data: None,
    };
    // The optional tail (TP-PI and what it announces) is decoded leniently: the
    // report's meaning is already complete, and networks and SIMs vary here.
    let tail = r.rest();
    if tail.is_empty() {
        return Ok(sr);
    }
    if tail.iter().all(|&b| b == 0xFF) {
        warnings.push(format!(
            "{} octets of FF padding after TP-Status ignored (SIM record)",
            tail.len()
        ));
        return Ok(sr);
    }
    let mut t = Reader::new(tail);
    let pi = t.u8("pi")?;
    sr.pi = Some(pi);
    if pi & 0x78 != 0 {
        warnings.push(format!(
            "TP-PI {pi:02X} has reserved bits set; optional fields ignored"
        ));
        return Ok(sr);
    }
    let tail_result = (|| -> Result<(), DecodeError> {
        if pi & 0x01 != 0 {
            sr.pid = Some(t.u8("pid")?);
        }
        if pi & 0x02 != 0 {
            sr.dcs = Some(Dcs::parse(t.u8("dcs")?));
        }
        if pi & 0x04 != 0 {
            let dcs = sr.dcs.unwrap_or(Dcs::parse(0));
            sr.user_data = Some(decode_user_data(&mut t, &dcs, fo & 0x40 != 0, warnings)?);
        }
        Ok(())
    })();
    if let Err(e) = tail_result {
        warnings.push(format!("optional fields after TP-Status ignored: {e}"));
    }
    note_trailing(&mut t, warnings);
    Ok(sr)
}

fn decode_user_data(
    r: &mut Reader<'_>,
    dcs: &Dcs,
    udhi: bool,
    warnings: &mut Vec<String>,
) -> Result<UserData, DecodeError> {
    let udl = r.u8("udl")?;
    let septets = dcs.alphabet == Alphabet::Gsm7 && !dcs.compressed;
    let needed = if septets {
        gsm7::packed_len(udl.into())
    } else {
        udl.into()
    };
    let available = r.remaining();
    let present = r.take(needed.min(available), "ud")?;
    if available < needed {
        warnings.push(format!(
            "ud: truncated, {available} of {needed} octets present"
        ));
    }
    let (udh, header_len) = if udhi {
        let Some(&udhl) = present.first() else {
            return Err(DecodeError::Truncated {
                field: "udh",
                need: 1,
                have: 0,
            });
        };
        let end = 1 + udhl as usize;
        let Some(header) = present.get(1..end) else {
            return Err(DecodeError::invalid(
                "udh",
                format!(
                    "header length {udhl} exceeds the {} octets of user data",
                    present.len()
                ),
            ));
        };
        (udh::parse(header)?, end)
    } else {
        (Vec::new(), 0)
    };
    let body = if septets {
        let header_septets = (header_len * 8).div_ceil(7);
        if header_septets > udl as usize {
            return Err(DecodeError::invalid(
                "udl",
                format!("{udl} septets cannot hold a {header_len}-octet header"),
            ));
        }
        let all = gsm7::unpack(present, udl.into());
        let shift = udh::single_shift_language(&udh)
            .map(gsm7::ShiftTable::National)
            .unwrap_or_default();
        Body::Text(gsm7::from_septets(&all[header_septets..], shift))
    } else {
        if header_len > udl as usize {
            return Err(DecodeError::invalid(
                "udl",
                format!("{udl} octets cannot hold a {header_len}-octet header"),
            ));
        }
        let data = &present[header_len..];
        if dcs.alphabet == Alphabet::Ucs2 && !dcs.compressed {
            let (text, lossy) = ucs2::decode(data);
            if lossy {
                warnings.push("ud: invalid UTF-16 (lone surrogate or odd length) replaced".into());
            }
            Body::Text(text)
        } else {
            if dcs.compressed {
                warnings.push("ud: compressed text is not supported; shown as data".into());
            }
            Body::Data(data.to_vec())
        }
    };
    Ok(UserData { udl, udh, body })
}

fn note_timestamp(t: &Timestamp, field: &str, warnings: &mut Vec<String>) {
    if t.tz_not_bcd {
        warnings.push(format!(
            "{field}: time zone octet {:02X} is not BCD; read as {:+} quarter hours",
            t.raw[6], t.tz_quarters
        ));
    }
    if t.to_utc().is_none() {
        warnings.push(format!("{field}: {} is not a valid date and time", t));
    }
}

fn note_trailing(r: &mut Reader<'_>, warnings: &mut Vec<String>) {
    let rest = r.rest();
    if rest.is_empty() {
        return;
    }
    if rest.iter().all(|&b| b == 0xFF) {
        warnings.push(format!(
            "{} octets of FF padding after the user data ignored",
            rest.len()
        ));
    } else {
        warnings.push(format!(
            "{} octets beyond the user data length ignored ({})",
            rest.len(),
            to_hex(&rest[..rest.len().min(16)])
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_chinese_submit_from_tutorial() {
        let d = decode_hex(
            "0891683108100005F011000D91683109423346F90008000A5DE54F5C61095FEBFF01",
            Layout::Auto,
        )
        .unwrap();
        assert_eq!(
            d.smsc,
            Smsc::Address(Address {
                number: "+8613800100500".into(),
                toa: 0x91
            })
        );
        assert_eq!(d.tpdu_len, 25);
        let Tpdu::Submit(s) = d.tpdu else {
            panic!("not a submit")
        };
        assert_eq!(s.destination.number, "+8613902433649");
        assert_eq!(s.user_data.text(), Some("工作愉快！"));
        assert_eq!(
            s.validity,
            Validity::Relative {
                octet: 0,
                minutes: 5
            }
        );
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = from_hex("0891683108100005F011000D91683109423346F90008000A5DE54F5C61095FEBFF01")
            .unwrap();
        for n in 0..full.len() - 10 {
            let r = decode(&full[..n], Layout::WithSmsc);
            assert!(r.is_err(), "prefix of {n} octets decoded: {r:?}");
        }
    }

    #[test]
    fn reserved_message_type_is_named() {
        let e = decode_hex("0003", Layout::WithSmsc).unwrap_err();
        assert_eq!(e.field(), "first octet");
    }
}
