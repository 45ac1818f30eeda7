//! Reply parsers against answers captured from real modems (reference/modems.md §2.2),
//! each test named after the modem it comes from.

use smsgw::at::parse::{self, Registration};

fn l(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn cmgs_spec_and_trailing_comma() {
    assert_eq!(parse::cmgs(&l(&["+CMGS: 64"])), Some(64));
    // lua-lluv-gsmmodem mock: optional second field present but empty.
    assert_eq!(parse::cmgs(&l(&["+CMGS: 1,"])), Some(1));
    assert_eq!(parse::cmgs(&l(&["+CMGS: 12,07911326040000F0"])), Some(12));
    assert_eq!(parse::cmgs(&l(&["+CMGS: 300"])), None);
    assert_eq!(parse::cmgs(&l(&[])), None);
}

#[test]
fn csq_quectel_and_sierra() {
    let s = parse::csq(&l(&["+CSQ: 16,99"])).unwrap();
    assert_eq!(s.dbm(), Some(-81));
    assert_eq!(s.bars(), 3);
    let s = parse::csq(&l(&["+CSQ: 99,99"])).unwrap();
    assert_eq!((s.dbm(), s.bars()), (None, 0));
    assert_eq!(parse::csq(&l(&["+CSQ: 31,0"])).unwrap().dbm(), Some(-51));
}

#[test]
fn creg_dialects_from_gammu_dumps() {
    let cases: &[(&str, Registration)] = &[
        ("+CREG: 0,1", Registration::Home),
        ("+CREG: 0,1,\"5E25\",\"605F\"", Registration::Home), // Siemens
        ("+CREG: 2,1,4CA,81DE445", Registration::Home),       // Huawei, unquoted
        ("+CREG: 0,1,\"5E25\",\"605F\",2", Registration::Home), // Telit with AcT
        ("+CREG: 2,5,\"2AF5\",\"0B88E350\",2", Registration::Roaming), // Sierra
        ("+CREG: 2,1,\"\",\"605F\"", Registration::Home),     // empty LAC
        ("+CREG: 2,1,\"0B,\"0100701\",7", Registration::Home), // mismatched quotes
        ("+CREG: 2,1,\"5E25", Registration::Home),            // unterminated
        ("+CREG: 2,5, 1607, 14DB", Registration::Roaming),    // Huawei, spaces
        ("+CREG: 0,2", Registration::Searching),
        ("+CREG: 0,3", Registration::Denied),
    ];
    for (line, want) in cases {
        assert_eq!(parse::creg(&l(&[line])), Some(*want), "{line}");
    }
    // Some modems answer a bare OK.
    assert_eq!(parse::creg(&l(&[])), None);
    assert!(Registration::Roaming.is_registered());
    assert!(!Registration::Searching.is_registered());
}

#[test]
fn cops_operators() {
    assert_eq!(
        parse::cops(&l(&["+COPS: 0,0,\"CHINA MOBILE\",7"])).as_deref(),
        Some("CHINA MOBILE")
    );
    assert_eq!(
        parse::cops(&l(&["+COPS: 0,0,\"IND airtel airtel\",7"])).as_deref(),
        Some("IND airtel airtel")
    );
    assert_eq!(parse::cops(&l(&["+COPS: 0"])), None);
}

#[test]
fn cpin_states() {
    assert_eq!(parse::cpin(&l(&["+CPIN: READY"])).as_deref(), Some("READY"));
    assert_eq!(
        parse::cpin(&l(&["+CPIN: SIM PIN"])).as_deref(),
        Some("SIM PIN")
    );
}

#[test]
fn cpms_wavecom_python_gsmmodem_and_huawei() {
    assert_eq!(
        parse::cpms(&l(&["+CPMS: 14,50,14,50"])).unwrap().first(),
        Some((14, 50))
    );
    assert_eq!(
        parse::cpms(&l(&["+CPMS: 7,20,7,20,7,20"]))
            .unwrap()
            .memories
            .len(),
        3
    );
    let h = parse::cpms(&l(&["+CPMS: \"SM\",65,100,\"ME\",12,250,\"BM\",0,30"])).unwrap();
    assert_eq!(h.memories[1], (Some("ME".into()), 12, 250));
    assert_eq!(parse::cpms(&l(&["+CPMS: "])), None);
}

#[test]
fn cmgr_header_variants_from_gammu_and_python_gsmmodem() {
    let pdu = "07919761989901F0040B917777777777F70000514042314545210720A8";
    for (header, stat, len) in [
        ("+CMGR: 1,,25", Some(1), Some(25)),
        ("+CMGR: 0,23", Some(0), Some(23)),
        ("+CMGR: 24", None, Some(24)),
        ("+CMGR: ,,92", None, Some(92)),
        ("+CMGR: 4,1,,151", Some(4), Some(151)),
    ] {
        let r = parse::cmgr(&l(&[header, pdu])).unwrap();
        assert_eq!(
            (r.stat, r.length, r.pdu.as_str()),
            (stat, len, pdu),
            "{header}"
        );
    }
    // Empty slot: bare OK.
    assert_eq!(parse::cmgr(&l(&[])), None);
}

#[test]
fn cmgl_huawei_and_no_space_after_colon() {
    let r = parse::cmgl(&l(&[
        "+CMGL: 0,0,,159",
        "0791AB",
        "+CMGL:1,1,,21",
        "0791CD",
        "+CMGL: 2,1,,21",
    ]));
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].index, r[0].stat, r[0].length),
        (Some(0), Some(0), Some(159))
    );
    assert_eq!((r[1].index, r[1].pdu.as_str()), (Some(1), "0791CD"));
}

#[test]
fn identities() {
    assert_eq!(
        parse::digits(&l(&["867584034561234"])).as_deref(),
        Some("867584034561234")
    );
    assert_eq!(
        parse::digits(&l(&["+CGSN: \"867584034561234\""])).as_deref(),
        Some("867584034561234")
    );
    assert_eq!(parse::digits(&l(&["ERROR-ish"])), None);
    // gammu at-model 06: leading and trailing blanks.
    assert_eq!(
        parse::identity(&l(&[" MULTIBAND  900E  1800 "])).as_deref(),
        Some("MULTIBAND  900E  1800")
    );
}

#[test]
fn iccid_forms_including_huawei_nibble_swap() {
    assert_eq!(
        parse::iccid(&l(&["^ICCID: \"983351106111005079F8\""])).as_deref(),
        Some("8933150116110005978")
    );
    assert_eq!(
        parse::iccid(&l(&["+CCID: 89860012345678901234"])).as_deref(),
        Some("89860012345678901234")
    );
    assert_eq!(
        parse::iccid(&l(&["+ICCID: 8986001234567890123F"])).as_deref(),
        Some("8986001234567890123")
    );
    assert_eq!(
        parse::iccid(&l(&["89860012345678901234"])).as_deref(),
        Some("89860012345678901234")
    );
    assert_eq!(parse::iccid(&l(&["1234"])), None);
}

#[test]
fn csca_forms_from_gammu_at_smsc_dumps() {
    assert_eq!(
        parse::csca(&l(&["+CSCA: \"+79168999100\",145"])).as_deref(),
        Some("+79168999100")
    );
    assert_eq!(
        parse::csca(&l(&["+CSCA: \"6281100000\",145"])).as_deref(),
        Some("6281100000")
    );
    assert_eq!(parse::csca(&l(&["+CSCA: \"\",129"])), None);
    // After AT+CSCS="UCS2", quoted and unquoted.
    assert_eq!(
        parse::csca(&l(&[
            "+CSCA: \"002B0034003400370037003000300030003000300030\",145"
        ]))
        .as_deref(),
        Some("+4477000000")
    );
    assert_eq!(
        parse::csca(&l(&["+CSCA: 002B00390031,145"])).as_deref(),
        Some("+91")
    );
    assert_eq!(parse::csca(&l(&[])), None);
}
