//! From text to SMS-SUBMIT PDUs: choose the alphabet, cut the text into parts,
//! and build one PDU per part with the concatenation header.
//!
//! Rules: GSM-7 when every character fits (160 septets, 153 per part with an 8-bit
//! reference header, 152 with a 16-bit one), else UCS2 (70 UTF-16 units, 67 or 66
//! per part). Parts are cut on character boundaries, so an escape sequence (`€`) or
//! a surrogate pair (emoji) is never split. Text that needs more parts than allowed
//! is an error, never silently truncated.

use super::address::Address;
use super::dcs::{Alphabet, Dcs};
use super::time::relative_vp_octet;
use super::udh::{self, UdhElement};
use super::{gsm7, to_hex, ucs2, EncodeError};
use serde::Serialize;

/// Which alphabet to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// GSM-7 if every character fits, else UCS2.
    #[default]
    Auto,
    /// Always UCS2 (for modems or networks that mangle GSM-7).
    Ucs2,
}

/// The concatenation reference written into every part of a multipart message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConcatRef {
    /// 8-bit reference (the common choice; one more character per part).
    Ref8(u8),
    /// 16-bit reference (fewer collisions when a handset holds many partial messages).
    Ref16(u16),
}

/// Everything about an SMS-SUBMIT except its destination and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitOptions {
    /// SMSC number to embed; `None` writes `00` so the modem uses its `AT+CSCA`.
    pub smsc: Option<String>,
    /// Request a status report (TP-SRR) for every part.
    pub request_report: bool,
    /// Relative validity period in minutes (rounded up to what TP-VP can say).
    pub validity_minutes: Option<u32>,
    /// Class 0 ("flash"): shown at once, not stored by the handset.
    pub flash: bool,
    /// The concatenation reference (ignored for single-part messages).
    pub concat_ref: ConcatRef,
    /// The most parts a message may take (1..=255).
    pub max_parts: usize,
    pub encoding: Encoding,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        SubmitOptions {
            smsc: None,
            request_report: true,
            validity_minutes: None,
            flash: false,
            concat_ref: ConcatRef::Ref8(0),
            max_parts: 10,
            encoding: Encoding::Auto,
        }
    }
}

/// How a text will be sent: its alphabet and the text of each part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub alphabet: Alphabet,
    pub parts: Vec<String>,
}

/// One encoded part, ready for `AT+CMGS=<cmgs_len>` followed by the PDU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EncodedPart {
    /// 1-based part number.
    pub seq: u8,
    pub total: u8,
    /// The TPDU length in octets, SMSC field excluded: the `AT+CMGS` argument.
    pub cmgs_len: usize,
    /// The whole PDU (SMSC field included) in hex, as written to the modem.
    pub pdu: String,
    /// The text this part carries.
    pub text: String,
}

/// Chooses the alphabet and splits `text` into parts without building PDUs:
/// the daemon uses it to reject oversized text at intake.
pub fn plan(
    text: &str,
    encoding: Encoding,
    wide_ref: bool,
    max_parts: usize,
) -> Result<Plan, EncodeError> {
    if !(1..=255).contains(&max_parts) {
        return Err(EncodeError::InvalidOption {
            option: "max_parts",
            reason: "must be between 1 and 255",
        });
    }
    let gsm = encoding == Encoding::Auto && gsm7::septet_len(text).is_some();
    let (alphabet, single, multi) = match (gsm, wide_ref) {
        (true, false) => (Alphabet::Gsm7, 160, 153),
        (true, true) => (Alphabet::Gsm7, 160, 152),
        (false, false) => (Alphabet::Ucs2, 70, 67),
        (false, true) => (Alphabet::Ucs2, 70, 66),
    };
    let cost = |c: char| match alphabet {
        Alphabet::Gsm7 => gsm7::encode_char(c).map_or(1, gsm7::Septets::len),
        _ => ucs2::units(c),
    };
    let total: usize = text.chars().map(cost).sum();
    if total <= single {
        return Ok(Plan {
            alphabet,
            parts: vec![text.to_string()],
        });
    }
    let mut parts = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, c) in text.char_indices() {
        let n = cost(c);
        if used + n > multi {
            parts.push(text[start..i].to_string());
            start = i;
            used = 0;
        }
        used += n;
    }
    parts.push(text[start..].to_string());
    if parts.len() > max_parts {
        return Err(EncodeError::TooManyParts {
            needed: parts.len(),
            max: max_parts,
        });
    }
    Ok(Plan { alphabet, parts })
}

/// Builds the SMS-SUBMIT PDUs for `text` to `to`. TP-MR is 0: modems write their
/// own reference and return it in `+CMGS: <mr>`.
pub fn encode_submit(
    to: &str,
    text: &str,
    opts: &SubmitOptions,
) -> Result<Vec<EncodedPart>, EncodeError> {
    let da = Address::parse_number("to", to)?.encode_tp();
    let smsc = match &opts.smsc {
        None => vec![0],
        Some(n) => Address::parse_number("smsc", n)?.encode_smsc(),
    };
    let wide = matches!(opts.concat_ref, ConcatRef::Ref16(_));
    let plan = plan(text, opts.encoding, wide, opts.max_parts)?;
    let total = plan.parts.len() as u8;
    let dcs = Dcs::for_submit(plan.alphabet, opts.flash);
    let mut first_octet = 0x01; // SMS-SUBMIT
    if opts.validity_minutes.is_some() {
        first_octet |= 0x10; // TP-VPF relative
    }
    if opts.request_report {
        first_octet |= 0x20; // TP-SRR
    }
    if total > 1 {
        first_octet |= 0x40; // TP-UDHI
    }
    let mut out = Vec::with_capacity(plan.parts.len());
    for (i, part) in plan.parts.into_iter().enumerate() {
        let seq = i as u8 + 1;
        let header = if total > 1 {
            udh::encode(&[match opts.concat_ref {
                ConcatRef::Ref8(reference) => UdhElement::Concat8 {
                    reference,
                    total,
                    seq,
                },
                ConcatRef::Ref16(reference) => UdhElement::Concat16 {
                    reference,
                    total,
                    seq,
                },
            }])
        } else {
            Vec::new()
        };
        let (udl, ud) = user_data(&part, plan.alphabet, header);
        let mut tpdu = Vec::with_capacity(16 + ud.len());
        tpdu.extend([first_octet, 0x00]);
        tpdu.extend(&da);
        tpdu.extend([0x00, dcs]);
        if let Some(m) = opts.validity_minutes {
            tpdu.push(relative_vp_octet(m));
        }
        tpdu.push(udl);
        tpdu.extend(ud);
        let mut pdu = smsc.clone();
        pdu.extend(&tpdu);
        out.push(EncodedPart {
            seq,
            total,
            cmgs_len: tpdu.len(),
            pdu: to_hex(&pdu),
            text: part,
        });
    }
    Ok(out)
}

/// TP-UDL and TP-UD for one part's text after `header` (also used by [`super::build`]).
pub(crate) fn user_data(text: &str, alphabet: Alphabet, header: Vec<u8>) -> (u8, Vec<u8>) {
    match alphabet {
        Alphabet::Gsm7 => {
            let septets = gsm7::to_septets(text).expect("plan chose GSM-7 for this text");
            let header_bits = header.len() * 8;
            let fill = (7 - header_bits % 7) % 7;
            let header_septets = (header_bits + fill) / 7;
            let mut ud = header;
            ud.extend(gsm7::pack(&septets, fill));
            ((header_septets + septets.len()) as u8, ud)
        }
        _ => {
            let mut ud = header;
            ud.extend(ucs2::encode(text));
            (ud.len() as u8, ud)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{decode_hex, Layout, Tpdu};

    #[test]
    fn reproduces_the_chinese_tutorial_pdu() {
        let opts = SubmitOptions {
            smsc: Some("+8613800100500".into()),
            request_report: false,
            validity_minutes: Some(5),
            ..Default::default()
        };
        let parts = encode_submit("+8613902433649", "工作愉快！", &opts).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(
            parts[0].pdu,
            "0891683108100005F011000D91683109423346F90008000A5DE54F5C61095FEBFF01"
        );
        assert_eq!(parts[0].cmgs_len, 25);
    }

    #[test]
    fn boundaries() {
        let p = |t: &str| plan(t, Encoding::Auto, false, 255).unwrap();
        assert_eq!(p(&"a".repeat(160)).parts.len(), 1);
        assert_eq!(p(&"a".repeat(161)).parts.len(), 2);
        assert_eq!(p(&"a".repeat(306)).parts.len(), 2);
        assert_eq!(p(&"a".repeat(307)).parts.len(), 3);
        assert_eq!(p(&"€".repeat(80)).parts.len(), 1);
        assert_eq!(p(&"€".repeat(81)).parts.len(), 2);
        assert_eq!(p(&"中".repeat(70)).parts.len(), 1);
        assert_eq!(p(&"中".repeat(71)).parts.len(), 2);
        assert_eq!(p(&"中".repeat(134)).parts.len(), 2);
        assert_eq!(p(&"中".repeat(135)).parts.len(), 3);
        assert_eq!(
            plan(&"中".repeat(132), Encoding::Auto, true, 255)
                .unwrap()
                .parts
                .len(),
            2
        );
        assert_eq!(
            plan(&"中".repeat(133), Encoding::Auto, true, 255)
                .unwrap()
                .parts
                .len(),
            3
        );
    }

    #[test]
    fn escape_and_surrogates_never_split() {
        // 152 'a' then '€': the escape pair does not fit in part 1's 153 septets.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let pl = plan(&text, Encoding::Auto, false, 10).unwrap();
        assert_eq!(pl.parts[0], "a".repeat(152));
        assert!(pl.parts[1].starts_with('€'));
        let text = format!("{}😀", "中".repeat(66));
        let pl = plan(
            &format!("{text}{}", "x".repeat(10)),
            Encoding::Auto,
            false,
            10,
        )
        .unwrap();
        assert_eq!(pl.parts[0], "中".repeat(66));
        assert!(pl.parts[1].starts_with('😀'));
    }

    #[test]
    fn too_long_is_an_error_not_a_truncation() {
        let e = plan(&"中".repeat(700), Encoding::Auto, false, 10).unwrap_err();
        assert_eq!(
            e,
            EncodeError::TooManyParts {
                needed: 11,
                max: 10
            }
        );
        assert!(plan("x", Encoding::Auto, false, 0).is_err());
    }

    #[test]
    fn multipart_gsm7_decodes_back_with_header() {
        let text = "Happy Mid-Autumn Festival! ".repeat(8);
        let opts = SubmitOptions {
            concat_ref: ConcatRef::Ref8(42),
            flash: true,
            ..Default::default()
        };
        let parts = encode_submit("13800138000", &text, &opts).unwrap();
        assert_eq!(parts.len(), 2);
        let mut joined = String::new();
        for p in &parts {
            let d = decode_hex(&p.pdu, Layout::WithSmsc).unwrap();
            assert!(d.warnings.is_empty(), "{:?}", d.warnings);
            assert_eq!(d.tpdu_len, p.cmgs_len);
            let Tpdu::Submit(s) = d.tpdu else { panic!() };
            assert!(s.status_report_request);
            assert_eq!(s.dcs.class, Some(0));
            assert_eq!(s.destination.toa, 0x81);
            let c = s.user_data.concat().unwrap();
            assert_eq!((c.reference, c.total, c.seq), (42, 2, p.seq));
            joined.push_str(s.user_data.text().unwrap());
        }
        assert_eq!(joined, text);
    }

    #[test]
    fn bad_numbers_are_errors() {
        let o = SubmitOptions::default();
        assert!(matches!(
            encode_submit("+86 138", "x", &o),
            Err(EncodeError::InvalidNumber { field: "to", .. })
        ));
        let o = SubmitOptions {
            smsc: Some("x".into()),
            ..Default::default()
        };
        assert!(matches!(
            encode_submit("10086", "x", &o),
            Err(EncodeError::InvalidNumber { field: "smsc", .. })
        ));
    }
}
