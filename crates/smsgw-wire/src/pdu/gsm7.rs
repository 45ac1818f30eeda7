//! GSM 03.38 / TS 23.038 default alphabet: character tables, septet packing and
//! unpacking (with the fill bits a user data header needs).
//!
//! Why it exists: most Latin-script messages fit in 7 bits, 160 characters per SMS
//! instead of 70 in UCS2; getting the extension table and the fill bits right is
//! where other encoders go wrong (a `€` on a part boundary, the first character
//! after a concatenation header).

/// The escape septet that selects the extension table for the next septet.
pub const ESC: u8 = 0x1B;

/// The default alphabet, indexed by septet. 0x1B is the escape (never output).
const DEFAULT: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The default extension table (after ESC): septet -> character.
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Turkish national language single shift table (TS 23.038 A.2.1), used on decode
/// when a user data header carries IEI 0x24 with language 1.
const TURKISH_SINGLE_SHIFT: [(u8, char); 17] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x47, 'Ğ'),
    (0x49, 'İ'),
    (0x53, 'Ş'),
    (0x63, 'ç'),
    (0x65, '€'),
    (0x67, 'ğ'),
    (0x69, 'ı'),
    (0x73, 'ş'),
];

/// Which single shift table applies to ESC sequences while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShiftTable {
    /// The default extension table.
    #[default]
    Default,
    /// A national single shift table by its 23.038 language id (only Turkish, 1, is
    /// built in; others fall back to the default extension table).
    National(u8),
}

/// How one character is written in GSM 7-bit: one septet, or ESC plus one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Septets {
    One(u8),
    Escaped(u8),
}

impl Septets {
    /// Number of septets the character takes (1, or 2 for extension characters).
    pub fn len(self) -> usize {
        match self {
            Septets::One(_) => 1,
            Septets::Escaped(_) => 2,
        }
    }

    /// Always false: a character takes at least one septet.
    pub fn is_empty(self) -> bool {
        false
    }
}

/// The septet(s) for `c`, or `None` when `c` is not in the default alphabet or
/// its extension table (the message must then go as UCS2).
pub fn encode_char(c: char) -> Option<Septets> {
    // Fast path for the common ASCII letters and digits.
    if c.is_ascii_alphanumeric() {
        return Some(Septets::One(c as u8));
    }
    if let Some(i) = DEFAULT.iter().position(|&d| d == c) {
        if i as u8 != ESC {
            return Some(Septets::One(i as u8));
        }
    }
    EXTENSION
        .iter()
        .find(|&&(_, e)| e == c)
        .map(|&(s, _)| Septets::Escaped(s))
}

/// Septet count of `text` in GSM 7-bit, or `None` if any character needs UCS2.
pub fn septet_len(text: &str) -> Option<usize> {
    text.chars().map(|c| encode_char(c).map(Septets::len)).sum()
}

/// Encodes `text` into septets (values 0..=127), or `None` if it does not fit
/// the default alphabet.
pub fn to_septets(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match encode_char(c)? {
            Septets::One(s) => out.push(s),
            Septets::Escaped(s) => {
                out.push(ESC);
                out.push(s);
            }
        }
    }
    Some(out)
}

/// Decodes septets to text. Unknown extension codes fall back to the default
/// table character, as TS 23.038 §6.2.1.1 prescribes; a lone trailing ESC is dropped.
pub fn from_septets(septets: &[u8], shift: ShiftTable) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut iter = septets.iter().map(|s| s & 0x7F);
    while let Some(s) = iter.next() {
        if s == ESC {
            let Some(next) = iter.next() else { break };
            let table: &[(u8, char)] = match shift {
                ShiftTable::National(1) => &TURKISH_SINGLE_SHIFT,
                _ => &EXTENSION,
            };
            match table.iter().find(|&&(code, _)| code == next) {
                Some(&(_, c)) => out.push(c),
                // ESC ESC is reserved for a further extension: show a space.
                None if next == ESC => out.push(' '),
                None => out.push(DEFAULT[next as usize]),
            }
        } else {
            out.push(DEFAULT[s as usize]);
        }
    }
    out
}

/// Packs septets into octets, starting `fill_bits` (0..=6) bits into the first
/// octet: the fill that aligns text after a user data header on a septet boundary.
pub fn pack(septets: &[u8], fill_bits: usize) -> Vec<u8> {
    let total_bits = fill_bits + septets.len() * 7;
    let mut out = vec![0u8; total_bits.div_ceil(8)];
    for (i, &s) in septets.iter().enumerate() {
        let bit = fill_bits + i * 7;
        let (byte, shift) = (bit / 8, bit % 8);
        let v = u16::from(s & 0x7F) << shift;
        out[byte] |= v as u8;
        if shift > 1 {
            out[byte + 1] |= (v >> 8) as u8;
        }
    }
    out
}

/// Unpacks `count` septets from `octets` starting at bit 0. Missing octets read
/// as zero (the caller decides whether that is an error or a lenient decode).
pub fn unpack(octets: &[u8], count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let bit = i * 7;
        let (byte, shift) = (bit / 8, bit % 8);
        let lo = u16::from(octets.get(byte).copied().unwrap_or(0));
        let hi = u16::from(octets.get(byte + 1).copied().unwrap_or(0));
        out.push((((hi << 8 | lo) >> shift) & 0x7F) as u8);
    }
    out
}

/// Octets needed to hold `septets` septets packed from bit 0.
pub fn packed_len(septets: usize) -> usize {
    (septets * 7).div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_packs_like_the_spec_example() {
        // "hellohello" is the classic 23.040 example: E8329BFD4697D9EC37.
        let s = to_septets("hellohello").unwrap();
        assert_eq!(
            pack(&s, 0),
            [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]
        );
        assert_eq!(
            from_septets(&unpack(&pack(&s, 0), 10), ShiftTable::Default),
            "hellohello"
        );
    }

    #[test]
    fn extension_characters_take_two_septets() {
        for c in ['€', '[', ']', '{', '}', '\\', '~', '^', '|'] {
            assert_eq!(encode_char(c).map(Septets::len), Some(2), "{c}");
        }
        assert_eq!(septet_len("a€b"), Some(4));
        assert_eq!(septet_len("你"), None);
        assert_eq!(
            from_septets(&to_septets("[€]").unwrap(), ShiftTable::Default),
            "[€]"
        );
    }

    #[test]
    fn every_default_character_round_trips() {
        for (i, &c) in DEFAULT.iter().enumerate() {
            if i as u8 == ESC {
                continue;
            }
            assert_eq!(encode_char(c), Some(Septets::One(i as u8)), "{c:?}");
        }
    }

    #[test]
    fn unknown_escape_falls_back_to_default_table() {
        assert_eq!(from_septets(&[ESC, b'i'], ShiftTable::Default), "i");
        assert_eq!(from_septets(&[ESC, b'i'], ShiftTable::National(1)), "ı");
        assert_eq!(from_septets(&[b'a', ESC], ShiftTable::Default), "a");
    }

    #[test]
    fn fill_bits_shift_the_text() {
        let s = to_septets("A").unwrap();
        // One fill bit: 'A' (0x41) lands at bit 1.
        assert_eq!(pack(&s, 1), [0x82]);
        let s = to_septets("AB").unwrap();
        assert_eq!(unpack(&pack(&s, 0), 2), s);
    }
}
