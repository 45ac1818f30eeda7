//! Property tests of the codec: encode→decode round trips for arbitrary text
//! (GSM-7, extension characters, Chinese, emoji, anything), size limits per part,
//! concatenation headers; and decoding arbitrary or mutated bytes never panics.

use proptest::prelude::*;
use smsgw::pdu::{self, Alphabet, ConcatRef, Encoding, Layout, SubmitOptions, Tpdu};

/// Characters weighted towards what smsgw really sends, plus anything at all.
fn text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range(' ', '~'),
        2 => prop::sample::select(vec!['€', '[', ']', '{', '}', '\\', '~', '^', '|', '\u{0C}', 'é', 'Δ', 'ß', '£', '¥', '\n', '\r', '@']),
        4 => proptest::char::range('\u{4E00}', '\u{9FFF}'),
        1 => prop::sample::select(vec!['，', '。', '！', '？', '：', '（', '）', '【', '】', '\u{3000}']),
        1 => proptest::char::range('\u{1F300}', '\u{1F6FF}'),
        1 => any::<char>(),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(text_char(), 0..max).prop_map(|v| v.into_iter().collect())
}

/// Texts that fit GSM-7 only (to exercise septet packing and fill bits).
fn gsm_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            8 => proptest::char::range(' ', 'z').prop_filter("GSM-7", |c| !matches!(c, '`')),
            2 => prop::sample::select(vec!['€', '[', ']', '{', '}', '\\', '~', '^', '|', 'è', 'Ø', '_']),
        ],
        0..max,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn concat_ref() -> impl Strategy<Value = ConcatRef> {
    prop_oneof![
        any::<u8>().prop_map(ConcatRef::Ref8),
        any::<u16>().prop_map(ConcatRef::Ref16)
    ]
}

fn round_trip(
    text: &str,
    cref: ConcatRef,
    report: bool,
    encoding: Encoding,
) -> Result<(), TestCaseError> {
    let opts = SubmitOptions {
        request_report: report,
        concat_ref: cref,
        max_parts: 255,
        encoding,
        ..Default::default()
    };
    let parts = pdu::encode_submit("+8613800138000", text, &opts).expect("encodes");
    let wide = matches!(cref, ConcatRef::Ref16(_));
    let plan = pdu::plan(text, encoding, wide, 255).unwrap();
    prop_assert_eq!(parts.len(), plan.parts.len());
    let total = parts.len();
    let mut joined = String::new();
    for (i, p) in parts.iter().enumerate() {
        let d = pdu::decode_hex(&p.pdu, Layout::WithSmsc).expect("own PDU decodes");
        prop_assert!(d.warnings.is_empty(), "warnings: {:?}", d.warnings);
        prop_assert_eq!(d.tpdu_len, p.cmgs_len);
        let Tpdu::Submit(s) = d.tpdu else {
            return Err(TestCaseError::fail("not a SUBMIT"));
        };
        prop_assert_eq!(s.status_report_request, report);
        let ud = &s.user_data;
        // Per-part limits: 140 octets of user data (160 septets).
        match s.dcs.alphabet {
            Alphabet::Gsm7 => prop_assert!(ud.udl <= 160),
            _ => prop_assert!(ud.udl <= 140),
        }
        if total == 1 {
            prop_assert!(ud.udh.is_empty());
        } else {
            let c = ud.concat().expect("multipart has a concat header");
            prop_assert_eq!(c.total as usize, total);
            prop_assert_eq!(c.seq as usize, i + 1);
            prop_assert_eq!(c.wide, wide);
            let want_ref = match cref {
                ConcatRef::Ref8(r) => u16::from(r),
                ConcatRef::Ref16(r) => r,
            };
            prop_assert_eq!(c.reference, want_ref);
        }
        let t = ud.text().expect("text body");
        prop_assert_eq!(t, p.text.as_str());
        joined.push_str(t);
    }
    prop_assert_eq!(joined, text);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_text_round_trips(t in text(500), cref in concat_ref(), report in any::<bool>()) {
        round_trip(&t, cref, report, Encoding::Auto)?;
    }

    #[test]
    fn gsm_text_round_trips_in_both_alphabets(t in gsm_text(700), cref in concat_ref()) {
        round_trip(&t, cref, false, Encoding::Auto)?;
        round_trip(&t, cref, true, Encoding::Ucs2)?;
        let plan = pdu::plan(&t, Encoding::Auto, false, 255).unwrap();
        prop_assert_eq!(plan.alphabet, Alphabet::Gsm7);
    }

    #[test]
    fn part_count_is_minimal_and_limit_is_enforced(t in text(400), max in 1usize..6) {
        let plan = pdu::plan(&t, Encoding::Auto, false, 255).unwrap();
        // Greedy cutting is minimal: no two neighbouring parts would fit in one.
        let per_part = if plan.alphabet == Alphabet::Gsm7 { 153 } else { 67 };
        let cost = |s: &str| match plan.alphabet {
            Alphabet::Gsm7 => pdu::gsm7::septet_len(s).unwrap(),
            _ => s.encode_utf16().count(),
        };
        for w in plan.parts.windows(2) {
            prop_assert!(cost(&w[0]) + cost(&w[1]) > per_part);
        }
        match pdu::plan(&t, Encoding::Auto, false, max) {
            Ok(p) => prop_assert!(p.parts.len() <= max),
            Err(pdu::EncodeError::TooManyParts { needed, max: m }) => {
                prop_assert_eq!(m, max);
                prop_assert_eq!(needed, plan.parts.len());
                prop_assert!(needed > max);
            }
            Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e}"))),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        for layout in [Layout::Auto, Layout::WithSmsc, Layout::TpduOnly, Layout::TpduLen(bytes.len() / 2)] {
            if let Ok(d) = pdu::decode(&bytes, layout) {
                // A decoded PDU always serialises (the CLI prints it).
                serde_json::to_string(&d).unwrap();
            }
        }
    }

    #[test]
    fn mutated_real_pdus_never_panic(row in 0usize..149, at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let data = include_str!("../data/pdu_vectors.tsv");
        let hex = data.lines().nth(row + 1).unwrap().split('\t').nth(2).unwrap();
        let mut bytes = pdu::from_hex(hex).unwrap();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Ok(d) = pdu::decode(&bytes, Layout::Auto) {
            serde_json::to_string(&d).unwrap();
        }
    }
}
