//! Data coding scheme (TS 23.038 §4): which alphabet the user data uses, and the
//! message class (class 0 = "flash", shown at once and not stored).

use serde::Serialize;

/// How the user data is coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Alphabet {
    /// GSM 7-bit default alphabet, packed; UDL counts septets.
    #[serde(rename = "gsm7")]
    Gsm7,
    /// 8-bit data; UDL counts octets.
    #[serde(rename = "8bit")]
    Eight,
    /// UCS2 (UTF-16BE in practice); UDL counts octets.
    #[serde(rename = "ucs2")]
    Ucs2,
}

/// A decoded DCS octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Dcs {
    #[serde(serialize_with = "super::serde_hex::u8")]
    pub raw: u8,
    pub alphabet: Alphabet,
    /// Message class 0..=3 when the DCS carries one.
    pub class: Option<u8>,
    /// Compressed text (never produced by handsets in practice; decoded as data).
    pub compressed: bool,
    /// The octet uses a reserved value; the alphabet is TS 23.038's fallback.
    pub reserved: bool,
}

impl Dcs {
    /// Interprets a DCS octet. Reserved values are read as GSM-7 (TS 23.038:
    /// "any reserved codings shall be assumed to be the GSM 7 bit default alphabet").
    pub fn parse(raw: u8) -> Dcs {
        let mut d = Dcs {
            raw,
            alphabet: Alphabet::Gsm7,
            class: None,
            compressed: false,
            reserved: false,
        };
        match raw >> 4 {
            // General data coding (00xx) and automatic deletion (01xx) groups.
            0x0..=0x7 => {
                d.compressed = raw & 0x20 != 0;
                if raw & 0x10 != 0 {
                    d.class = Some(raw & 0x03);
                }
                d.alphabet = match (raw >> 2) & 0x03 {
                    0 => Alphabet::Gsm7,
                    1 => Alphabet::Eight,
                    2 => Alphabet::Ucs2,
                    _ => {
                        d.reserved = true;
                        Alphabet::Gsm7
                    }
                };
            }
            // Reserved coding groups.
            0x8..=0xB => d.reserved = true,
            // Message waiting indication: discard / store (GSM-7), store (UCS2).
            0xC | 0xD => {}
            0xE => d.alphabet = Alphabet::Ucs2,
            // Data coding / message class group; bit 3 is reserved.
            _ => {
                d.reserved = raw & 0x08 != 0;
                d.class = Some(raw & 0x03);
                if raw & 0x04 != 0 {
                    d.alphabet = Alphabet::Eight;
                }
            }
        }
        d
    }

    /// The DCS octet smsgw sends: GSM-7 (0x00) or UCS2 (0x08), with class 0
    /// (0x10/0x18) for flash messages.
    pub fn for_submit(alphabet: Alphabet, flash: bool) -> u8 {
        let a = match alphabet {
            Alphabet::Gsm7 => 0x00,
            Alphabet::Eight => 0x04,
            Alphabet::Ucs2 => 0x08,
        };
        if flash {
            0x10 | a
        } else {
            a
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups() {
        assert_eq!(Dcs::parse(0x08).alphabet, Alphabet::Ucs2);
        assert_eq!(Dcs::parse(0x19).class, Some(1));
        assert_eq!(Dcs::parse(0x19).alphabet, Alphabet::Ucs2);
        assert_eq!(Dcs::parse(0xF4).alphabet, Alphabet::Eight);
        assert_eq!(Dcs::parse(0xF4).class, Some(0));
        let f9 = Dcs::parse(0xF9);
        assert_eq!(
            (f9.alphabet, f9.class, f9.reserved),
            (Alphabet::Gsm7, Some(1), true)
        );
        assert_eq!(Dcs::parse(0xC8).alphabet, Alphabet::Gsm7);
        assert_eq!(Dcs::parse(0xE0).alphabet, Alphabet::Ucs2);
        assert!(Dcs::parse(0x0C).reserved);
        assert!(Dcs::parse(0x24).compressed);
    }

    #[test]
    fn submit_octets() {
        assert_eq!(Dcs::for_submit(Alphabet::Ucs2, true), 0x18);
        assert_eq!(
            Dcs::parse(Dcs::for_submit(Alphabet::Gsm7, true)).class,
            Some(0)
        );
        assert_eq!(Dcs::for_submit(Alphabet::Gsm7, false), 0x00);
    }
}
