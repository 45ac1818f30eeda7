//! UCS2 user data: in practice UTF-16 big-endian, because every current handset
//! and SMSC passes surrogate pairs through (emoji). Chinese text always goes this way.

/// UTF-16 code units `c` takes (1, or 2 for a surrogate pair). Parts are split on
/// character boundaries, so a pair never straddles two parts.
pub fn units(c: char) -> usize {
    c.len_utf16()
}

/// Encodes text as UTF-16BE octets.
pub fn encode(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Decodes UTF-16BE octets. A lone surrogate (as sent by encoders that split a
/// pair across parts) becomes U+FFFD; an odd trailing octet is ignored. Returns
/// the text and whether anything had to be replaced or dropped.
pub fn decode(octets: &[u8]) -> (String, bool) {
    let units = octets
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]));
    let mut lossy = !octets.len().is_multiple_of(2);
    let text = char::decode_utf16(units)
        .map(|r| {
            r.unwrap_or_else(|_| {
                lossy = true;
                char::REPLACEMENT_CHARACTER
            })
        })
        .collect();
    (text, lossy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_and_emoji_round_trip() {
        let t = "工作愉快！😀";
        let enc = encode(t);
        assert_eq!(&enc[..4], &[0x5D, 0xE5, 0x4F, 0x5C]);
        assert_eq!(decode(&enc), (t.to_string(), false));
        assert_eq!(units('😀'), 2);
    }

    #[test]
    fn lone_surrogate_and_odd_octet_are_lossy_not_fatal() {
        let (t, lossy) = decode(&[0xD8, 0x3D, 0x00, 0x41, 0x00]);
        assert_eq!(t, "\u{FFFD}A");
        assert!(lossy);
    }
}
