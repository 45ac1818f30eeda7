//! The outbox contract's rules for rows written by other systems: what makes a
//! row sendable, rejected (with a reason a person can act on) or expired.
//! Pure, so every rule is tested without a database. Reading the row's columns
//! (a BLOB body, `'high'` as a priority, `infinity` as a time) is each
//! backend's; what could not be read arrives as [`Claimed::unreadable`].

use super::model::Claimed;
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

/// At most `n` characters of `s` (quoted), marked when cut: a reason must stay
/// readable whatever another system wrote.
pub fn clip(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(n).collect();
        format!("{head:?}… ({count} characters)")
    }
}

/// Checks a claimed row against the contract.
pub fn check(c: &Claimed, max_parts: usize, now: DateTime<Utc>) -> Verdict {
    if let Some(why) = &c.unreadable {
        return Verdict::Reject(format!("unreadable value: {why}"));
    }
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
        return Verdict::Reject(format!(
            "invalid recipient {}: {reason}",
            clip(original, 40)
        ));
    }
    let body = match c.body.as_deref() {
        None => return Verdict::Reject("body is missing (NULL)".into()),
        Some(b) => b,
    };
    if let Some(exp) = c.expires_at {
        if exp <= now {
            return Verdict::Expire;
        }
    }
    match check_body(body, max_parts) {
        Ok(()) => Verdict::Send {
            recipient,
            body: body.to_string(),
        },
        Err(reason) => Verdict::Reject(reason),
    }
}

/// Whether a body can be sent: not empty, no NUL characters, and at most
/// `max_parts` SMS parts. The dispatcher rejects a row with this reason; `smsgw
/// enqueue` refuses it at once. Megabytes of text are refused without encoding them.
pub fn check_body(body: &str, max_parts: usize) -> Result<(), String> {
    if body.trim().is_empty() {
        return Err("body is empty".into());
    }
    if body.contains('\0') {
        return Err(
            "body contains NUL characters (binary data, or a C string written whole?)".into(),
        );
    }
    // No part carries more than 160 characters: a longer body cannot fit.
    let chars = body.chars().take(max_parts * 160 + 1).count();
    if chars > max_parts * 160 {
        return Err(format!(
            "body is too long: {} characters, more than {max_parts} SMS parts can carry",
            body.chars().count()
        ));
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
            unreadable: None,
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
        c.unreadable = Some("send_at: \"next tuesday\" is not a UTC time".into());
        assert!(reason(&c).contains("send_at"));
        assert!(reason(&claimed(Some("10086"), Some("a\0b"))).contains("NUL"));
    }

    #[test]
    fn hostile_sizes_are_refused_quickly_with_a_short_reason() {
        let now = Utc::now();
        let huge = "x".repeat(5_000_000);
        let Verdict::Reject(r) = check(&claimed(Some("10086"), Some(&huge)), 10, now) else {
            panic!()
        };
        assert!(r.contains("5000000 characters"), "{r}");
        let long = "1".repeat(5000);
        let Verdict::Reject(r) = check(&claimed(Some(&long), Some("x")), 10, now) else {
            panic!()
        };
        assert!(r.len() < 200, "{r}");
        assert!(r.contains("5000 characters"), "{r}");
    }

    #[test]
    fn expired_rows_expire() {
        let mut c = claimed(Some("10086"), Some("x"));
        c.expires_at = Some(crate::store::parse_time("2020-01-01 00:00:00").unwrap());
        assert_eq!(check(&c, 3, Utc::now()), Verdict::Expire);
    }
}
