//! The network side: SMS-DELIVER and SMS-STATUS-REPORT encoders.
//!
//! smsgw never sends these to a modem; the modem simulator does (incoming
//! messages, delivery reports), and tests use them to build exact inputs. Kept
//! beside the decoder so the two are checked against each other.

use super::address::Address;
use super::dcs::Dcs;
use super::split::{plan, Encoding};
use super::time::Timestamp;
use super::udh::{self, UdhElement};
use super::{gsm7, EncodeError};

/// A time stamp from its parts (tz in quarter hours).
pub fn timestamp(
    year: u8,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    tz_quarters: i8,
) -> Timestamp {
    let mut t = Timestamp {
        year,
        month,
        day,
        hour,
        minute,
        second,
        tz_quarters,
        raw: [0; 7],
        tz_not_bcd: false,
    };
    t.raw = t.encode();
    t
}

/// A time stamp for `at` in the given zone.
pub fn timestamp_at(at: chrono::DateTime<chrono::Utc>, tz_quarters: i8) -> Timestamp {
    use chrono::{Datelike, Timelike};
    let local = at + chrono::Duration::minutes(i64::from(tz_quarters) * 15);
    timestamp(
        (local.year() % 100) as u8,
        local.month() as u8,
        local.day() as u8,
        local.hour() as u8,
        local.minute() as u8,
        local.second() as u8,
        tz_quarters,
    )
}

fn smsc_field(smsc: Option<&str>) -> Result<Vec<u8>, EncodeError> {
    Ok(match smsc {
        None => vec![0],
        Some(n) => Address::parse_number("smsc", n)?.encode_smsc(),
    })
}

/// An SMS-STATUS-REPORT for a part sent with reference `mr` to `recipient`.
pub fn status_report(
    smsc: Option<&str>,
    mr: u8,
    recipient: &str,
    scts: &Timestamp,
    discharge: &Timestamp,
    status: u8,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = smsc_field(smsc)?;
    out.extend([0x06, mr]); // SMS-STATUS-REPORT, no more messages waiting
    out.extend(Address::parse_number("recipient", recipient)?.encode_tp());
    out.extend(scts.encode());
    out.extend(discharge.encode());
    out.push(status);
    Ok(out)
}

/// SMS-DELIVER PDUs for `text` from `sender` (a number, or letters for an
/// alphanumeric sender), split like an SMSC would, with an 8-bit concatenation reference.
pub fn deliver(
    smsc: Option<&str>,
    sender: &str,
    text: &str,
    scts: &Timestamp,
    reference: u8,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    let smsc = smsc_field(smsc)?;
    let oa = if sender.bytes().any(|b| b.is_ascii_alphabetic()) {
        let septets = gsm7::to_septets(sender).ok_or(EncodeError::InvalidNumber {
            field: "sender",
            value: sender.into(),
            reason: "alphanumeric senders must fit the GSM alphabet",
        })?;
        let packed = gsm7::pack(&septets, 0);
        // The length counts the semi-octets the septets really use.
        let mut v = vec![(septets.len() * 7).div_ceil(4) as u8, 0xD0];
        v.extend(packed);
        v
    } else {
        Address::parse_number("sender", sender)?.encode_tp()
    };
    let plan = plan(text, Encoding::Auto, false, 255)?;
    let total = plan.parts.len() as u8;
    let mut out = Vec::new();
    for (i, part) in plan.parts.iter().enumerate() {
        let header = if total > 1 {
            udh::encode(&[UdhElement::Concat8 {
                reference,
                total,
                seq: i as u8 + 1,
            }])
        } else {
            Vec::new()
        };
        let (udl, ud) = super::split::user_data(part, plan.alphabet, header);
        let mut pdu = smsc.clone();
        pdu.push(if total > 1 { 0x44 } else { 0x04 });
        pdu.extend(&oa);
        pdu.push(0x00);
        pdu.push(Dcs::for_submit(plan.alphabet, false));
        pdu.extend(scts.encode());
        pdu.push(udl);
        pdu.extend(ud);
        out.push(pdu);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{decode, Layout, Tpdu};

    #[test]
    fn status_report_round_trips() {
        let t = timestamp(26, 11, 22, 10, 0, 0, 32);
        let bytes = status_report(None, 255, "+8613800138000", &t, &t, 0x30).unwrap();
        let d = decode(&bytes, Layout::WithSmsc).unwrap();
        let Tpdu::StatusReport(sr) = d.tpdu else {
            panic!()
        };
        assert_eq!(
            (sr.message_reference, sr.recipient.number.as_str()),
            (255, "+8613800138000")
        );
        assert!(!sr.status.is_final);
        assert_eq!(sr.scts, t);
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn chinese_multipart_deliver_round_trips() {
        let t = timestamp_at(
            chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
            32,
        );
        let text = "您好，您预约的门诊时间是明天上午九点，请提前十五分钟到达。".repeat(3);
        let parts = deliver(Some("+8613800100500"), "10690001", &text, &t, 9).unwrap();
        assert_eq!(parts.len(), 2);
        let mut joined = String::new();
        for p in &parts {
            let d = decode(p, Layout::Auto).unwrap();
            let Tpdu::Deliver(x) = d.tpdu else { panic!() };
            assert_eq!(x.originator.number, "10690001");
            assert_eq!(x.user_data.concat().unwrap().reference, 9);
            joined.push_str(x.user_data.text().unwrap());
        }
        assert_eq!(joined, text);
        for sender in ["BANK", "HOSPITL", "ChinaMob"] {
            let one = deliver(None, sender, "TD", &t, 0).unwrap();
            let Tpdu::Deliver(x) = decode(&one[0], Layout::Auto).unwrap().tpdu else {
                panic!()
            };
            assert_eq!(x.originator.number, sender);
            assert!(x.originator.is_alphanumeric());
        }
    }
}
