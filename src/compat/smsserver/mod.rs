//! SMSLib's SMSServer tables (金笛 and other "短信猫" middleware use the same
//! layout): `smsserver_out` rows in, their `status` (`U` unsent, `Q` queued,
//! `S` sent, `F` failed), `sent_date`, `ref_no` and `errors` written back;
//! received messages and status reports (`type = 'S'`) into `smsserver_in`;
//! incoming calls into `smsserver_calls`. This file is the pure part; `db.rs`
//! holds the SQL and `sync.rs` the task, in the shape of the gammu layer.
//!
//! Exactly once: a row is queued in smsgw's outbox with the dedupe key
//! [`dedupe_key`] before its `status` goes from `U` to `Q`, and its outcome is
//! written only from `Q` (or `U`), so a pass repeated after a crash finds the
//! row queued already and writes each outcome once.

pub mod db;
pub mod sync;

use crate::store::{Delivery, InboxMessage, NewMessage, OutboxRow, PartReport, State};
use chrono::{DateTime, Utc};

/// One `smsserver_out` row, every column as text (NULL as `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutRow {
    pub id: i64,
    pub recipient: Option<String>,
    pub text: Option<String>,
    pub encoding: Option<String>,
    pub status_report: Option<String>,
    pub flash_sms: Option<String>,
    pub priority: Option<String>,
    pub create_date: Option<String>,
    pub gateway_id: Option<String>,
    pub status: Option<String>,
    /// `sent_date`, for rows already sent (reports).
    pub sent_date: Option<String>,
}

/// The row's dedupe key in smsgw's outbox: its id and `create_date` (an id
/// that comes round again is a new message).
pub fn dedupe_key(r: &OutRow) -> String {
    let at: String = r
        .create_date
        .as_deref()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("smsserver:{}:{at}", r.id)
}

fn flag(name: &str, v: Option<&str>) -> Result<bool, String> {
    match v.map(str::trim) {
        None | Some("") | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(o) => Err(format!("{name} {o:?} is not 0 or 1")),
    }
}

/// What a `U` row becomes: a message for smsgw's outbox, or the reason it is
/// failed (`F`) without being sent.
pub fn pickup(r: &OutRow) -> Result<NewMessage, String> {
    match r.encoding.as_deref().map(str::trim) {
        None | Some("") | Some("7") | Some("U") | Some("u") => {}
        Some("8") => return Err("encoding 8 (binary data) is not supported".into()),
        Some(o) => return Err(format!("encoding {o:?} is not 7, 8 or U")),
    }
    let text = r.text.clone().ok_or("text is NULL")?;
    let priority = match r.priority.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(p) => p
            .parse::<i64>()
            .map_err(|_| format!("priority {p:?} is not a whole number"))?
            .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
    };
    let group = r
        .gateway_id
        .as_deref()
        .map(str::trim)
        .filter(|g| !g.is_empty() && *g != "*")
        .map(str::to_string);
    Ok(NewMessage {
        recipient: r.recipient.clone(),
        body: Some(text),
        category: None,
        priority,
        send_at: None,
        expires_at: None,
        dedupe_key: Some(dedupe_key(r)),
        modem_group: group,
        request_report: flag("status_report", r.status_report.as_deref())?,
        flash: flag("flash_sms", r.flash_sms.as_deref())?,
        external_ref: Some(format!("smsserver:{}", r.id)),
    })
}

/// How a row ends in `smsserver_out`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `S` or `F`.
    pub status: &'static str,
    /// UTC text.
    pub sent_date: Option<String>,
    /// The message reference of the first part (SMSServer's `ref_no`).
    pub ref_no: Option<String>,
    /// Added to `errors`.
    pub errors: i64,
}

fn utc_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The outcome of a row whose smsgw row is final, `None` while it is not.
pub fn outcome(row: &OutboxRow, parts: &[PartReport]) -> Option<Outcome> {
    match row.state {
        State::Sent => Some(Outcome {
            status: "S",
            sent_date: row.sent_at.map(utc_text),
            ref_no: parts
                .iter()
                .find(|p| p.part.seq == 1)
                .and_then(|p| p.part.mr)
                .map(|m| m.to_string()),
            errors: 0,
        }),
        State::Failed | State::Rejected | State::Expired | State::Cancelled | State::Suppressed => {
            Some(Outcome {
                status: "F",
                sent_date: None,
                ref_no: None,
                errors: 1,
            })
        }
        State::Queued | State::Sending | State::Retrying | State::Ambiguous => None,
    }
}

/// One `smsserver_in` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRow {
    pub originator: String,
    /// `I` a message, `S` a status report.
    pub kind: &'static str,
    /// `7` or `U`.
    pub encoding: &'static str,
    /// UTC text.
    pub message_date: String,
    pub receive_date: String,
    pub text: String,
    pub original_ref_no: Option<String>,
    pub original_receive_date: Option<String>,
    pub gateway_id: String,
}

fn encoding_of(text: &str) -> &'static str {
    if crate::pdu::gsm7::septet_len(text).is_some() {
        "7"
    } else {
        "U"
    }
}

/// A received message as SMSServer records it.
pub fn inbound(m: &InboxMessage, now: DateTime<Utc>) -> InRow {
    InRow {
        originator: m.sender.clone(),
        kind: "I",
        encoding: encoding_of(&m.body),
        message_date: utc_text(m.received_at),
        receive_date: utc_text(now),
        text: m.body.clone(),
        original_ref_no: None,
        original_receive_date: None,
        gateway_id: m.modem.clone(),
    }
}

/// A part's delivery report as SMSServer records it (`type = 'S'`), or
/// `None` while none came.
pub fn status_report(recipient: &str, p: &PartReport) -> Option<InRow> {
    let text = match p.part.status {
        Delivery::Delivered => "DELIVERED",
        Delivery::Failed => "FAILED",
        Delivery::Unknown => "UNKNOWN",
        Delivery::Pending | Delivery::None => return None,
    };
    let at = utc_text(p.report_at.unwrap_or(p.part.submitted_at));
    Some(InRow {
        originator: recipient.to_string(),
        kind: "S",
        encoding: "7",
        message_date: at.clone(),
        receive_date: at,
        text: text.into(),
        original_ref_no: p.part.mr.map(|m| m.to_string()),
        original_receive_date: Some(utc_text(p.part.submitted_at)),
        gateway_id: p.part.modem.clone(),
    })
}

/// One `smsserver_calls` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRow {
    pub call_date: String,
    pub gateway_id: String,
    /// `''` when withheld (the column is NOT NULL).
    pub caller_id: String,
}

pub fn call(c: &crate::store::Call) -> CallRow {
    CallRow {
        call_date: utc_text(c.received_at),
        gateway_id: c.modem.clone(),
        caller_id: c.caller.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> OutRow {
        OutRow {
            id: 3,
            recipient: Some("13800138000".into()),
            text: Some("您好".into()),
            encoding: Some("U".into()),
            status_report: Some("1".into()),
            flash_sms: Some("0".into()),
            priority: Some("5".into()),
            create_date: Some("2026-12-03 10:00:00".into()),
            gateway_id: Some("*".into()),
            status: Some("U".into()),
            sent_date: None,
        }
    }

    #[test]
    fn unsent_rows_become_messages() {
        let m = pickup(&row()).unwrap();
        assert_eq!(m.dedupe_key.as_deref(), Some("smsserver:3:20261203100000"));
        assert!(m.request_report && !m.flash);
        assert_eq!((m.priority, m.modem_group), (5, None));
        let mut r = row();
        r.gateway_id = Some("modem1".into());
        assert_eq!(pickup(&r).unwrap().modem_group.as_deref(), Some("modem1"));
    }

    #[test]
    fn hostile_values_fail_their_row() {
        let with = |f: &dyn Fn(&mut OutRow)| {
            let mut r = row();
            f(&mut r);
            pickup(&r).unwrap_err()
        };
        assert!(with(&|r| r.encoding = Some("8".into())).contains("binary"));
        assert!(with(&|r| r.encoding = Some("X".into())).contains("encoding"));
        assert!(with(&|r| r.text = None).contains("NULL"));
        assert!(with(&|r| r.status_report = Some("2".into())).contains("status_report"));
        assert!(with(&|r| r.flash_sms = Some("yes".into())).contains("flash_sms"));
        assert!(with(&|r| r.priority = Some("high".into())).contains("priority"));
    }
}
