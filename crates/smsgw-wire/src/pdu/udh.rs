//! User data header (TS 23.040 §9.2.3.24): concatenation (8- and 16-bit
//! references), application ports, national language shifts, and any other
//! element kept as raw octets so that nothing is lost.

use super::{to_hex, DecodeError};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

const IEI_CONCAT8: u8 = 0x00;
const IEI_PORT8: u8 = 0x04;
const IEI_PORT16: u8 = 0x05;
const IEI_CONCAT16: u8 = 0x08;
/// National language single shift (the language id selects the table).
pub const IEI_SINGLE_SHIFT: u8 = 0x24;

/// One information element of a user data header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdhElement {
    /// Concatenated message, 8-bit reference: the default on encode.
    Concat8 { reference: u8, total: u8, seq: u8 },
    /// Concatenated message, 16-bit reference: fewer collisions on busy modems.
    Concat16 { reference: u16, total: u8, seq: u8 },
    /// Application port addressing, 8-bit ports.
    Port8 { dst: u8, src: u8 },
    /// Application port addressing, 16-bit ports (WAP push, visual voicemail).
    Port16 { dst: u16, src: u16 },
    /// Anything else, kept verbatim.
    Other { iei: u8, data: Vec<u8> },
}

/// A message's place in a concatenated series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Concat {
    /// The reference shared by every part (8-bit values widened).
    pub reference: u16,
    /// Whether the reference was carried in 16 bits.
    pub wide: bool,
    pub total: u8,
    /// 1-based sequence number.
    pub seq: u8,
}

/// Parses a header's elements (the octets after the UDHL octet).
pub fn parse(header: &[u8]) -> Result<Vec<UdhElement>, DecodeError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < header.len() {
        let iei = header[i];
        let Some(&len) = header.get(i + 1) else {
            return Err(DecodeError::invalid(
                "udh",
                format!("element {iei:02X} has no length octet"),
            ));
        };
        let len = len as usize;
        let Some(data) = header.get(i + 2..i + 2 + len) else {
            return Err(DecodeError::invalid(
                "udh",
                format!(
                    "element {iei:02X} claims {len} octets, {} left",
                    header.len() - i - 2
                ),
            ));
        };
        out.push(match (iei, data) {
            (IEI_CONCAT8, &[reference, total, seq]) => UdhElement::Concat8 {
                reference,
                total,
                seq,
            },
            (IEI_CONCAT16, &[r1, r2, total, seq]) => UdhElement::Concat16 {
                reference: u16::from_be_bytes([r1, r2]),
                total,
                seq,
            },
            (IEI_PORT8, &[dst, src]) => UdhElement::Port8 { dst, src },
            (IEI_PORT16, &[d1, d2, s1, s2]) => UdhElement::Port16 {
                dst: u16::from_be_bytes([d1, d2]),
                src: u16::from_be_bytes([s1, s2]),
            },
            _ => UdhElement::Other {
                iei,
                data: data.to_vec(),
            },
        });
        i += 2 + len;
    }
    Ok(out)
}

/// Encodes elements into a complete header, UDHL octet included.
pub fn encode(elements: &[UdhElement]) -> Vec<u8> {
    let mut out = vec![0u8];
    for e in elements {
        match *e {
            UdhElement::Concat8 {
                reference,
                total,
                seq,
            } => out.extend([IEI_CONCAT8, 3, reference, total, seq]),
            UdhElement::Concat16 {
                reference,
                total,
                seq,
            } => {
                let [r1, r2] = reference.to_be_bytes();
                out.extend([IEI_CONCAT16, 4, r1, r2, total, seq]);
            }
            UdhElement::Port8 { dst, src } => out.extend([IEI_PORT8, 2, dst, src]),
            UdhElement::Port16 { dst, src } => {
                out.push(IEI_PORT16);
                out.push(4);
                out.extend(dst.to_be_bytes());
                out.extend(src.to_be_bytes());
            }
            UdhElement::Other { iei, ref data } => {
                out.push(iei);
                out.push(data.len() as u8);
                out.extend(data);
            }
        }
    }
    out[0] = (out.len() - 1) as u8;
    out
}

/// The concatenation element of a header, if it has a usable one (TS 23.040 says
/// to ignore an element whose total or sequence number is 0 or out of range).
pub fn concat(elements: &[UdhElement]) -> Option<Concat> {
    elements.iter().find_map(|e| {
        let c = match *e {
            UdhElement::Concat8 {
                reference,
                total,
                seq,
            } => Concat {
                reference: reference.into(),
                wide: false,
                total,
                seq,
            },
            UdhElement::Concat16 {
                reference,
                total,
                seq,
            } => Concat {
                reference,
                wide: true,
                total,
                seq,
            },
            _ => return None,
        };
        (c.total > 0 && c.seq > 0 && c.seq <= c.total).then_some(c)
    })
}

/// The national single shift language, if the header selects one.
pub fn single_shift_language(elements: &[UdhElement]) -> Option<u8> {
    elements.iter().find_map(|e| match e {
        UdhElement::Other {
            iei: IEI_SINGLE_SHIFT,
            data,
        } => data.first().copied(),
        _ => None,
    })
}

/// JSON form: `{"concat8":[ref,total,seq]}`, `{"port16":[dst,src]}`, `{"iei_24":"01"}`.
impl Serialize for UdhElement {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self {
            UdhElement::Concat8 {
                reference,
                total,
                seq,
            } => m.serialize_entry(
                "concat8",
                &[u16::from(*reference), u16::from(*total), u16::from(*seq)],
            )?,
            UdhElement::Concat16 {
                reference,
                total,
                seq,
            } => m.serialize_entry(
                "concat16",
                &[*reference, u16::from(*total), u16::from(*seq)],
            )?,
            UdhElement::Port8 { dst, src } => m.serialize_entry("port8", &[dst, src])?,
            UdhElement::Port16 { dst, src } => m.serialize_entry("port16", &[dst, src])?,
            UdhElement::Other { iei, data } => {
                m.serialize_entry(&format!("iei_{iei:02X}"), &to_hex(data))?
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        let els = vec![
            UdhElement::Concat8 {
                reference: 7,
                total: 3,
                seq: 2,
            },
            UdhElement::Concat16 {
                reference: 0xBEEF,
                total: 2,
                seq: 1,
            },
            UdhElement::Port8 { dst: 1, src: 2 },
            UdhElement::Port16 {
                dst: 2948,
                src: 9200,
            },
            UdhElement::Other {
                iei: 0x24,
                data: vec![1],
            },
        ];
        let bytes = encode(&els);
        assert_eq!(bytes[0] as usize, bytes.len() - 1);
        assert_eq!(parse(&bytes[1..]).unwrap(), els);
        assert_eq!(single_shift_language(&els), Some(1));
        assert_eq!(concat(&els).unwrap().reference, 7);
    }

    #[test]
    fn bad_lengths_are_errors_naming_udh() {
        assert_eq!(parse(&[0x00, 0x05, 1, 2]).unwrap_err().field(), "udh");
        assert_eq!(parse(&[0x00]).unwrap_err().field(), "udh");
    }

    #[test]
    fn unusable_concat_is_ignored() {
        let els = parse(&[0x00, 0x03, 9, 2, 3]).unwrap();
        assert_eq!(concat(&els), None);
        // Wrong length for a concat element: kept as a raw element.
        let els = parse(&[0x00, 0x02, 9, 2]).unwrap();
        assert!(matches!(els[0], UdhElement::Other { iei: 0, .. }));
    }
}
