//! Addresses (TS 23.040 §9.1.2.5): the destination/originator/recipient fields in
//! semi-octets, alphanumeric senders in packed GSM-7, and the SMSC field whose
//! length counts octets instead of digits.

use super::{gsm7, DecodeError, EncodeError, Reader};
use serde::Serialize;

/// Type of number "international" (TON 001): printed with a leading `+`.
const TON_INTERNATIONAL: u8 = 1;
/// Type of number "alphanumeric" (TON 101): packed GSM-7, e.g. a bank's sender name.
const TON_ALPHANUMERIC: u8 = 5;
/// TOA for `+` numbers: international, ISDN/telephony numbering plan.
pub const TOA_INTERNATIONAL: u8 = 0x91;
/// TOA for numbers without `+`: unknown type (the network applies national rules), ISDN plan.
pub const TOA_UNKNOWN: u8 = 0x81;
/// Longest number accepted on encode: 20 digits fit the 10 octets TS 23.040 allows.
pub const MAX_DIGITS: usize = 20;

/// A decoded or to-be-encoded address: its type-of-address octet and its value
/// as people write it (`+8613800138000`, `10086`, `O2_`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    /// The number (`+` prefixed when international) or the alphanumeric name.
    pub number: String,
    /// The raw type-of-address octet.
    #[serde(serialize_with = "super::serde_hex::u8")]
    pub toa: u8,
}

impl Address {
    /// Type of number (bits 6..4 of the TOA).
    pub fn ton(&self) -> u8 {
        (self.toa >> 4) & 0x07
    }

    /// An alphanumeric sender such as a bank's name: it cannot be replied to.
    pub fn is_alphanumeric(&self) -> bool {
        self.ton() == TON_ALPHANUMERIC
    }

    /// Parses a number to send to: an optional leading `+` and 1..=20 digits,
    /// nothing else (no spaces, dashes or letters: those are the caller's to clean).
    pub fn parse_number(field: &'static str, value: &str) -> Result<Address, EncodeError> {
        let err = |reason| EncodeError::InvalidNumber {
            field,
            value: value.to_string(),
            reason,
        };
        let (international, digits) = match value.strip_prefix('+') {
            Some(d) => (true, d),
            None => (false, value),
        };
        if digits.is_empty() {
            return Err(err("no digits"));
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("only digits and an optional leading + are allowed"));
        }
        if digits.len() > MAX_DIGITS {
            return Err(err("more than 20 digits"));
        }
        Ok(Address {
            number: value.to_string(),
            toa: if international {
                TOA_INTERNATIONAL
            } else {
                TOA_UNKNOWN
            },
        })
    }

    /// The digits without the `+` (numbers built by [`Address::parse_number`] only).
    fn digits(&self) -> &str {
        self.number.strip_prefix('+').unwrap_or(&self.number)
    }

    /// TP-DA encoding: length in digits, TOA, swapped semi-octets with F filler.
    pub fn encode_tp(&self) -> Vec<u8> {
        let digits = self.digits();
        let mut out = vec![digits.len() as u8, self.toa];
        out.extend(semi_octets(digits));
        out
    }

    /// SMSC field encoding: length in octets (TOA included), TOA, semi-octets.
    pub fn encode_smsc(&self) -> Vec<u8> {
        let body = semi_octets(self.digits());
        let mut out = vec![body.len() as u8 + 1, self.toa];
        out.extend(body);
        out
    }

    /// Reads a TP-OA/TP-DA/TP-RA field (length counts semi-octets).
    pub(crate) fn decode_tp(
        r: &mut Reader<'_>,
        field: &'static str,
    ) -> Result<Address, DecodeError> {
        let len = r.u8(field)? as usize;
        if len > MAX_DIGITS {
            return Err(DecodeError::invalid(
                field,
                format!("address length {len} exceeds {MAX_DIGITS} semi-octets"),
            ));
        }
        let toa = r.u8(field)?;
        let octets = r.take(len.div_ceil(2), field)?;
        let ton = (toa >> 4) & 0x07;
        let number = if ton == TON_ALPHANUMERIC {
            let septets = gsm7::unpack(octets, len * 4 / 7);
            gsm7::from_septets(&septets, gsm7::ShiftTable::Default)
        } else {
            format_digits(ton, &read_semi_octets(octets, len))
        };
        Ok(Address { number, toa })
    }
}

/// Swapped semi-octets of a digit string, padded with F.
fn semi_octets(digits: &str) -> Vec<u8> {
    digits
        .as_bytes()
        .chunks(2)
        .map(|p| {
            let lo = p[0] - b'0';
            let hi = p.get(1).map_or(0x0F, |d| d - b'0');
            hi << 4 | lo
        })
        .collect()
}

/// Reads `count` semi-octets. 0-9 are digits; A..E are `* # a b c` (TS 23.040
/// §9.1.2.3); F is filler and skipped.
fn read_semi_octets(octets: &[u8], count: usize) -> String {
    octets
        .iter()
        .flat_map(|&o| [o & 0x0F, o >> 4])
        .take(count)
        .filter_map(|n| match n {
            0..=9 => Some((b'0' + n) as char),
            0xA => Some('*'),
            0xB => Some('#'),
            0xC => Some('a'),
            0xD => Some('b'),
            0xE => Some('c'),
            _ => None,
        })
        .collect()
}

fn format_digits(ton: u8, digits: &str) -> String {
    if ton == TON_INTERNATIONAL && !digits.is_empty() {
        format!("+{digits}")
    } else {
        digits.to_string()
    }
}

/// The SMSC field at the start of a PDU as modems write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SmscField {
    /// `00`: no SMSC given, the modem uses its `AT+CSCA` setting.
    Empty,
    /// A length of 1: only a type-of-address octet, no digits (stored by some phones).
    TypeOnly(u8),
    /// A real address.
    Address(Address),
}

/// Reads the SMSC field: length in octets (TOA included), TOA, semi-octets.
pub(crate) fn decode_smsc(r: &mut Reader<'_>) -> Result<SmscField, DecodeError> {
    const FIELD: &str = "smsc";
    let len = r.u8(FIELD)? as usize;
    if len == 0 {
        return Ok(SmscField::Empty);
    }
    if len > 11 {
        return Err(DecodeError::invalid(
            FIELD,
            format!("length {len} exceeds 11 octets"),
        ));
    }
    let toa = r.u8(FIELD)?;
    if toa & 0x80 == 0 {
        return Err(DecodeError::invalid(
            FIELD,
            format!("type-of-address {toa:02X} lacks its top bit"),
        ));
    }
    if len == 1 {
        return Ok(SmscField::TypeOnly(toa));
    }
    let octets = r.take(len - 1, FIELD)?;
    let digits = read_semi_octets(octets, (len - 1) * 2);
    Ok(SmscField::Address(Address {
        number: format_digits((toa >> 4) & 0x07, &digits),
        toa,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_international_and_national_numbers() {
        let a = Address::parse_number("to", "+8613902433649").unwrap();
        assert_eq!(
            a.encode_tp(),
            [0x0D, 0x91, 0x68, 0x31, 0x09, 0x42, 0x33, 0x46, 0xF9]
        );
        let n = Address::parse_number("to", "10086").unwrap();
        assert_eq!(n.encode_tp(), [0x05, 0x81, 0x01, 0x80, 0xF6]);
        let smsc = Address::parse_number("smsc", "+8613800100500").unwrap();
        assert_eq!(
            smsc.encode_smsc(),
            [0x08, 0x91, 0x68, 0x31, 0x08, 0x10, 0x00, 0x05, 0xF0]
        );
    }

    #[test]
    fn rejects_anything_but_digits() {
        for bad in [
            "",
            "+",
            "138 0013 8000",
            "abc",
            "+86-138",
            "123456789012345678901",
            "++1",
        ] {
            assert!(Address::parse_number("to", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn decodes_alphanumeric_and_special_nibbles() {
        let bytes = [0x06, 0xD0, 0x4F, 0x59, 0x04];
        let a = Address::decode_tp(&mut Reader::new(&bytes), "oa").unwrap();
        assert_eq!(a.number, "O2_");
        assert!(a.is_alphanumeric());
        let bytes = [0x09, 0x91, 0x21, 0x43, 0x6B, 0xA7, 0xF9];
        let a = Address::decode_tp(&mut Reader::new(&bytes), "oa").unwrap();
        assert_eq!(a.number, "+1234#67*9");
    }

    #[test]
    fn oversized_address_is_an_error_naming_the_field() {
        let bytes = [0x30, 0x91];
        let e = Address::decode_tp(&mut Reader::new(&bytes), "da").unwrap_err();
        assert_eq!(e.field(), "da");
    }
}
