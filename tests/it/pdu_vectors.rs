//! Decodes every row of tests/data/pdu_vectors.tsv (149 PDUs captured from real
//! modems and other projects' tests; legend in docs/codec.md) and checks every
//! field its row gives. A field this test does not know fails the test, so a new
//! column cannot be silently skipped.

use serde_json::{Map, Value};
use smsgw::pdu::{self, Body, Decoded, Layout, Smsc, Tpdu, UserData, Validity};
use std::collections::BTreeSet;

/// Columns that describe provenance, not decoded fields.
const PROVENANCE: &[&str] = &[
    "source_asserts_ok",
    "xcheck_python_gsmmodem",
    "python_gsmmodem_asserts",
    "at_context",
    "note",
    // The Turkish row gives both texts; we implement the national table, so the
    // source's text is the one checked (text_expected_by_source).
    "text_default_table_fallback",
];

struct Row {
    line: usize,
    kind: String,
    hex: String,
    expected: Map<String, Value>,
}

fn rows() -> Vec<Row> {
    let data = include_str!("../data/pdu_vectors.tsv");
    data.lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), 4, "line {}: expected 4 columns", i + 1);
            let Value::Object(expected) =
                serde_json::from_str(cols[3]).expect("expected column is JSON")
            else {
                panic!("line {}: expected column is not an object", i + 1)
            };
            Row {
                line: i + 1,
                kind: cols[0].to_string(),
                hex: cols[2].to_string(),
                expected,
            }
        })
        .collect()
}

fn hex8(v: u8) -> String {
    format!("{v:02X}")
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Fields common to the three types, looked up by the column names of the TSV.
struct View<'a> {
    d: &'a Decoded,
}

impl View<'_> {
    fn first_octet(&self) -> u8 {
        match &self.d.tpdu {
            Tpdu::Deliver(x) => x.first_octet,
            Tpdu::Submit(x) => x.first_octet,
            Tpdu::StatusReport(x) => x.first_octet,
        }
    }

    fn user_data(&self) -> Option<&UserData> {
        match &self.d.tpdu {
            Tpdu::Deliver(x) => Some(&x.user_data),
            Tpdu::Submit(x) => Some(&x.user_data),
            Tpdu::StatusReport(x) => x.user_data.as_ref(),
        }
    }

    fn pid_dcs(&self) -> (Option<u8>, Option<pdu::Dcs>) {
        match &self.d.tpdu {
            Tpdu::Deliver(x) => (Some(x.pid), Some(x.dcs)),
            Tpdu::Submit(x) => (Some(x.pid), Some(x.dcs)),
            Tpdu::StatusReport(x) => (x.pid, x.dcs),
        }
    }

    fn flags(&self) -> BTreeSet<&'static str> {
        let mut f = BTreeSet::new();
        let fo = self.first_octet();
        if fo & 0x40 != 0 {
            f.insert("udhi");
        }
        match &self.d.tpdu {
            Tpdu::Deliver(x) => {
                if x.status_report_indication {
                    f.insert("sri");
                }
                if x.more_messages_waiting {
                    f.insert("mms0_more_waiting");
                }
                if x.reply_path {
                    f.insert("rp");
                }
            }
            Tpdu::Submit(x) => {
                if x.status_report_request {
                    f.insert("srr");
                }
                if x.reject_duplicates {
                    f.insert("rd");
                }
                if x.reply_path {
                    f.insert("rp");
                }
            }
            Tpdu::StatusReport(x) => {
                if x.more_messages_waiting {
                    f.insert("mms0_more_waiting");
                }
            }
        }
        f
    }

    fn text(&self) -> Option<&str> {
        self.user_data().and_then(UserData::text)
    }

    fn has_warning(&self, needle: &str) -> bool {
        self.d.warnings.iter().any(|w| w.contains(needle))
    }
}

/// Checks one expected field; returns a description of the mismatch, if any.
fn check(row: &Row, v: &View<'_>, key: &str, want: &Value) -> Result<(), String> {
    let d = v.d;
    let got: String = match key {
        "smsc_field" => match &d.smsc {
            Smsc::Absent => "absent (bare TPDU)".into(),
            Smsc::Empty => "00 (empty, use AT+CSCA)".into(),
            Smsc::TypeOnly { .. } => "toa-only, no digits".into(),
            Smsc::Address(a) => a.number.clone(),
        },
        "fo" => hex8(v.first_octet()),
        "type" => match &d.tpdu {
            Tpdu::Deliver(_) => "SMS-DELIVER".into(),
            Tpdu::Submit(_) => "SMS-SUBMIT".into(),
            Tpdu::StatusReport(_) => "SMS-STATUS-REPORT".into(),
        },
        "mr" => match &d.tpdu {
            Tpdu::Submit(x) => x.message_reference.to_string(),
            Tpdu::StatusReport(x) => x.message_reference.to_string(),
            Tpdu::Deliver(_) => return Err("mr on a DELIVER".into()),
        },
        "oa" | "da" | "ra" | "oa_toa" | "da_toa" | "ra_toa" => {
            let a = match (&d.tpdu, &key[..2]) {
                (Tpdu::Deliver(x), "oa") => &x.originator,
                (Tpdu::Submit(x), "da") => &x.destination,
                (Tpdu::StatusReport(x), "ra") => &x.recipient,
                _ => return Err(format!("{key} does not fit the type")),
            };
            if key.ends_with("_toa") {
                hex8(a.toa)
            } else {
                a.number.clone()
            }
        }
        "pid" => v.pid_dcs().0.map(hex8).unwrap_or_default(),
        "dcs" => v.pid_dcs().1.map(|x| hex8(x.raw)).unwrap_or_default(),
        "alphabet" => v
            .pid_dcs()
            .1
            .map(|x| s(&serde_json::to_value(x.alphabet).unwrap()))
            .unwrap_or_default(),
        "class" => v
            .pid_dcs()
            .1
            .and_then(|x| x.class)
            .map(|c| c.to_string())
            .unwrap_or_default(),
        "scts" => match &d.tpdu {
            Tpdu::Deliver(x) => x.scts.to_string(),
            Tpdu::StatusReport(x) => x.scts.to_string(),
            Tpdu::Submit(_) => return Err("scts on a SUBMIT".into()),
        },
        "dt" => match &d.tpdu {
            Tpdu::StatusReport(x) => x.discharge_time.to_string(),
            _ => return Err("dt outside a status report".into()),
        },
        "scts_invalid_bcd" | "dt_invalid_bcd" => {
            let t = match (&d.tpdu, key) {
                (Tpdu::Deliver(x), "scts_invalid_bcd") => x.scts,
                (Tpdu::StatusReport(x), "scts_invalid_bcd") => x.scts,
                (Tpdu::StatusReport(x), "dt_invalid_bcd") => x.discharge_time,
                _ => return Err(format!("{key} does not fit the type")),
            };
            if !t.tz_not_bcd {
                return Err(format!("{key}: time zone not flagged as non-BCD"));
            }
            if !v.has_warning("not BCD") {
                return Err(format!("{key}: no warning"));
            }
            pdu::to_hex(&t.raw)
        }
        "vpf" | "vp" => {
            let Tpdu::Submit(x) = &d.tpdu else {
                return Err(format!("{key} outside a SUBMIT"));
            };
            match (key, &x.validity) {
                ("vpf", Validity::None) => "none".into(),
                ("vpf", Validity::Relative { .. }) => "relative".into(),
                ("vpf", Validity::Absolute { .. }) => "absolute".into(),
                ("vpf", Validity::Enhanced { .. }) => "enhanced".into(),
                ("vp", Validity::Relative { octet, .. }) => hex8(*octet),
                ("vp", Validity::Absolute { until }) => until.to_string(),
                _ => return Err("vp without a validity period".into()),
            }
        }
        "flags" => {
            let want: BTreeSet<String> = want.as_array().unwrap().iter().map(s).collect();
            let got: BTreeSet<String> = v.flags().into_iter().map(String::from).collect();
            return if want == got {
                Ok(())
            } else {
                Err(format!("flags: want {want:?}, got {got:?}"))
            };
        }
        "udl" => v.user_data().map(|u| u.udl.to_string()).unwrap_or_default(),
        "udh" => {
            let got = serde_json::to_value(&v.user_data().ok_or("no user data")?.udh).unwrap();
            return if &got == want {
                Ok(())
            } else {
                Err(format!("udh: want {want}, got {got}"))
            };
        }
        "text" | "text_expected_by_source" => v.text().unwrap_or("<no text>").to_string(),
        "data_hex" => {
            let Some(Body::Data(data)) = v.user_data().map(|u| &u.body) else {
                return Err("data_hex: body is not data".into());
            };
            let got = pdu::to_hex(data);
            let w = s(want);
            return match w.strip_suffix("...") {
                Some(prefix) if got.starts_with(prefix) => Ok(()),
                None if got == w => Ok(()),
                _ => Err(format!("data_hex: want {w}, got {got}")),
            };
        }
        "cmgs_len" => d.tpdu_len.to_string(),
        "st" | "st_class" | "st_meaning" => {
            let Tpdu::StatusReport(x) = &d.tpdu else {
                return Err(format!("{key} outside a status report"));
            };
            match key {
                "st" => hex8(x.status.raw),
                "st_class" => s(&serde_json::to_value(x.status.class).unwrap()),
                _ => x.status.meaning.to_string(),
            }
        }
        "pi" => match &d.tpdu {
            Tpdu::StatusReport(x) => x.pi.map(hex8).unwrap_or_default(),
            _ => return Err("pi outside a status report".into()),
        },
        "after_st" => {
            let Tpdu::StatusReport(x) = &d.tpdu else {
                return Err("after_st outside a status report".into());
            };
            let w = s(want);
            return if w.starts_with("FFFFFFFF") {
                // SIM record padding: no PI, and a warning saying so.
                (x.pi.is_none() && v.has_warning("FF padding"))
                    .then_some(())
                    .ok_or(format!(
                        "after_st: padding not recognised: {:?} {:?}",
                        x.pi, d.warnings
                    ))
            } else {
                let pi = u8::from_str_radix(&w[..2], 16).unwrap();
                (x.pi == Some(pi))
                    .then_some(())
                    .ok_or(format!("after_st: want PI {pi:02X}, got {:?}", x.pi))
            };
        }
        "ud_truncated" => {
            let w = s(want);
            return v
                .has_warning(&format!("truncated, {w}"))
                .then_some(())
                .ok_or(format!(
                    "ud_truncated: no warning 'truncated, {w}' in {:?}",
                    d.warnings
                ));
        }
        "ud_extra_octets" => {
            let w = s(want);
            return v
                .has_warning(&format!("{w} octets beyond the user data length"))
                .then_some(())
                .ok_or(format!(
                    "ud_extra_octets: no warning for {w} in {:?}",
                    d.warnings
                ));
        }
        "strict_decoder_expected" => {
            // A strict decoder rejects this row; we decode it leniently and say so.
            return (!d.warnings.is_empty())
                .then_some(())
                .ok_or("lenient decode without a warning".into());
        }
        other => return Err(format!("line {}: unknown field {other:?}", row.line)),
    };
    let want = s(want);
    if got == want {
        Ok(())
    } else {
        Err(format!("{key}: want {want:?}, got {got:?}"))
    }
}

#[test]
fn every_vector_decodes_to_its_expected_fields() {
    let rows = rows();
    assert_eq!(rows.len(), 149, "the vector file should hold 149 rows");
    let mut failures = Vec::new();
    let mut checked = 0;
    for row in &rows {
        let d = match pdu::decode_hex(&row.hex, Layout::Auto) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!(
                    "line {} ({}): decode error: {e}",
                    row.line, row.kind
                ));
                continue;
            }
        };
        // Quirk rows must either decode leniently with a warning, or (not the
        // case for any row today) error cleanly: never decode silently.
        if row.kind.contains("quirk") && d.warnings.is_empty() {
            let clean_quirk = [
                "submit_quirk_address",
                "deliver_quirk_address",
                "submit_quirk_smsc",
                "status_report_quirk_smsc",
            ];
            if !clean_quirk.contains(&row.kind.as_str()) {
                failures.push(format!(
                    "line {} ({}): quirk decoded without a warning",
                    row.line, row.kind
                ));
            }
        }
        let v = View { d: &d };
        for (key, want) in &row.expected {
            if PROVENANCE.contains(&key.as_str()) {
                continue;
            }
            checked += 1;
            if let Err(e) = check(row, &v, key, want) {
                failures.push(format!("line {} ({}): {e}", row.line, row.kind));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 1500, "only {checked} fields checked");
}

#[test]
fn vectors_decode_the_same_with_the_announced_tpdu_length() {
    // The modem layer passes the <length> of +CMGR/+CMT/+CDS; that must agree with Auto.
    for row in rows() {
        let auto = pdu::decode_hex(&row.hex, Layout::Auto).unwrap();
        let bytes = pdu::from_hex(&row.hex).unwrap();
        let with_len = pdu::decode(&bytes, Layout::TpduLen(auto.tpdu_len)).unwrap();
        assert_eq!(auto, with_len, "line {}", row.line);
    }
}

#[test]
fn submit_vectors_re_encode_where_smsgw_could_have_built_them() {
    // For every GSM-7/UCS2 SUBMIT without a header or oddity, re-encode the text to
    // the same number with the same options and compare octet for octet (TP-MR aside).
    let mut compared = 0;
    for row in rows() {
        if !(row.kind == "submit_gsm7" || row.kind == "submit_ucs2") {
            continue;
        }
        let d = pdu::decode_hex(&row.hex, Layout::Auto).unwrap();
        let Tpdu::Submit(sub) = &d.tpdu else { continue };
        let simple = sub.pid == 0
            && matches!(sub.dcs.raw, 0x00 | 0x08)
            && sub.user_data.udh.is_empty()
            && !sub.reject_duplicates
            && !sub.reply_path
            && d.warnings.is_empty()
            && matches!(sub.validity, Validity::None | Validity::Relative { .. })
            && (sub.destination.toa == 0x91 || sub.destination.toa == 0x81);
        if !simple {
            continue;
        }
        let text = sub.user_data.text().unwrap();
        // Our encoder picks GSM-7 whenever it can; skip UCS2 rows whose text would fit GSM-7.
        if sub.dcs.raw == 0x08 && pdu::gsm7::septet_len(text).is_some() {
            continue;
        }
        let opts = pdu::SubmitOptions {
            smsc: match &d.smsc {
                Smsc::Address(a) if a.toa == 0x91 || a.toa == 0x81 => Some(a.number.clone()),
                Smsc::Empty => None,
                _ => continue,
            },
            request_report: sub.status_report_request,
            validity_minutes: match sub.validity {
                Validity::Relative { minutes, .. } => Some(minutes),
                _ => None,
            },
            ..Default::default()
        };
        let parts = pdu::encode_submit(&sub.destination.number, text, &opts).unwrap();
        assert_eq!(parts.len(), 1, "line {}", row.line);
        let mut want = pdu::from_hex(&row.hex).unwrap();
        let mr_at = want.len() - d.tpdu_len + 1;
        want[mr_at] = 0;
        assert_eq!(
            parts[0].pdu,
            pdu::to_hex(&want),
            "line {} ({text:?})",
            row.line
        );
        compared += 1;
    }
    assert!(compared >= 15, "only {compared} submit vectors re-encoded");
}
