//! The outbox contract's rules for rows written by other systems: what makes a
//! row sendable, rejected (with a reason a person can act on) or expired.
//! Pure, so every rule is tested without a database.

use super::{parse_time, Claimed};
use crate::pdu::{self, EncodeError, Encoding};
use chrono::{DateTime, Utc};

/// What to do with a claimed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: the normalised recipient and the body.
    Send { recipient: String, body: String },
    /// Invalid: state `rejected`, this reason in `last_error`.
    Reject(String),
    /// `expires_at` has passed: state `expired`.
    Expire,
}

/// Recipient as other systems write it, normalised: spaces, dashes, dots and
/// parentheses are dropped (`138-0013-8000`, `+86 138 0013 8000`).
pub fn normalise_recipient(r: &str) -> String {
    r.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\t'))
        .collect()
}

/// Checks a claimed row against the contract.
pub fn check(c: &Claimed, max_parts: usize, now: DateTime<Utc>) -> Verdict {
    let recipient = match c.recipient.as_deref().map(normalise_recipient) {
        None => return Verdict::Reject("recipient is missing (NULL)".into()),
        Some(r) if r.is_empty() => return Verdict::Reject("recipient is empty".into()),
        Some(r) => r,
    };
    if let Err(e) = pdu::Address::parse_number("recipient", &recipient) {
        let reason = match e {
            EncodeError::InvalidNumber { reason, .. } => reason,
            _ => "not a phone number",
        };
        let original = c.recipient.as_deref().unwrap_or_default();
        return Verdict::Reject(format!("invalid recipient {original:?}: {reason}"));
    }
    let body = match c.body.as_deref() {
        None => return Verdict::Reject("body is missing (NULL)".into()),
        Some(b) => b.to_string(),
    };
    for (name, value) in [("send_at", &c.send_at), ("expires_at", &c.expires_at)] {
        if let Some(v) = value {
            if parse_time(v).is_none() {
                return Verdict::Reject(format!(
                    "{name} {v:?} is not a UTC timestamp (YYYY-MM-DD HH:MM:SS)"
                ));
            }
        }
    }
    if let Some(exp) = c.expires_at.as_deref().and_then(parse_time) {
        if exp <= now {
            return Verdict::Expire;
        }
    }
    match check_body(&body, max_parts) {
        Ok(()) => Verdict::Send { recipient, body },
        Err(reason) => Verdict::Reject(reason),
    }
}

/// Whether a body can be sent: not empty, and at most `max_parts` SMS parts. The
/// dispatcher rejects a row with this reason; `smsgw enqueue` refuses it at once.
pub fn check_body(body: &str, max_parts: usize) -> Result<(), String> {
    if body.trim().is_empty() {
        return Err("body is empty".into());
    }
    match pdu::plan(body, Encoding::Auto, false, max_parts) {
        Ok(_) => Ok(()),
        Err(EncodeError::TooManyParts { needed, max }) => Err(format!(
            "body is too long: it needs {needed} SMS parts, more than the maximum of {max} ({} characters)",
            body.chars().count()
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(recipient: Option<&str>, body: Option<&str>) -> Claimed {
        Claimed {
            id: 1,
            recipient: recipient.map(Into::into),
            body: body.map(Into::into),
            category: "notice".into(),
            priority: 0,
            send_at: None,
            expires_at: None,
            modem_group: None,
            request_report: true,
            flash: false,
            attempts: 0,
            due_at: Utc::now(),
            lease_until: Utc::now(),
            parts_done: vec![],
        }
    }

    #[test]
    fn valid_rows_are_normalised() {
        let v = check(
            &claimed(Some("+86 138-0013-8000"), Some("你好")),
            10,
            Utc::now(),
        );
        assert_eq!(
            v,
            Verdict::Send {
                recipient: "+8613800138000".into(),
                body: "你好".into()
            }
        );
    }

    #[test]
    fn bad_rows_get_a_reason() {
        let now = Utc::now();
        let reason = |c: &Claimed| match check(c, 3, now) {
            Verdict::Reject(r) => r,
            other => panic!("{other:?}"),
        };
        assert!(reason(&claimed(None, Some("x"))).contains("recipient is missing"));
        assert!(reason(&claimed(Some("  "), Some("x"))).contains("recipient is empty"));
        assert!(reason(&claimed(Some("call me"), Some("x"))).contains("only digits"));
        assert!(reason(&claimed(Some("10086"), None)).contains("body is missing"));
        assert!(reason(&claimed(Some("10086"), Some(" \n"))).contains("body is empty"));
        assert!(
            reason(&claimed(Some("10086"), Some(&"长".repeat(300)))).contains("needs 5 SMS parts")
        );
        let mut c = claimed(Some("10086"), Some("x"));
        c.send_at = Some("next tuesday".into());
        assert!(reason(&c).contains("send_at"));
    }

    #[test]
    fn expired_rows_expire() {
        let mut c = claimed(Some("10086"), Some("x"));
        c.expires_at = Some("2020-01-01 00:00:00".into());
        assert_eq!(check(&c, 3, Utc::now()), Verdict::Expire);
    }
}
