//! Final result codes: the line that ends a command's response.
//!
//! Ordered matchers mapped to a typed result, as ModemManager does: `OK`, `ERROR`,
//! `+CME ERROR` / `+CMS ERROR` in numeric (`AT+CMEE=1`) or verbose (`AT+CMEE=2`) form,
//! Huawei's `COMMAND NOT SUPPORT`, Motorola's `MODEM ERROR:`.

use serde::Serialize;
use std::fmt;

/// The code of a `+CME ERROR` / `+CMS ERROR`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ErrorCode {
    /// Numeric form (`+CMS ERROR: 304`).
    Code(u16),
    /// Verbose form (`+CME ERROR: SIM busy`).
    Text(String),
}

impl ErrorCode {
    fn parse(s: &str) -> ErrorCode {
        let s = s.trim();
        s.parse()
            .map_or_else(|_| ErrorCode::Text(s.to_string()), ErrorCode::Code)
    }

    /// The numeric code, also for the verbose texts smsgw needs to recognise.
    pub fn number(&self) -> Option<u16> {
        match self {
            ErrorCode::Code(c) => Some(*c),
            ErrorCode::Text(t) => {
                let t = t.to_ascii_lowercase();
                // Verbose texts from 27.007 §9.2 / 27.005 §3.2.5 that change what the daemon does.
                Some(match t.as_str() {
                    "sim busy" => 14,
                    "sim pin required" => 11,
                    "sim puk required" => 12,
                    "sim not inserted" => 10,
                    "sim failure" => 13,
                    "no network service" => 30,
                    "network timeout" => 31,
                    "memory full" => 322,
                    "smsc address unknown" => 330,
                    "operation not allowed" => 3,
                    "unknown error" => 500,
                    _ => return None,
                })
            }
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Code(c) => write!(f, "{c}"),
            ErrorCode::Text(t) => f.write_str(t),
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "code")]
pub enum Final {
    Ok,
    /// Plain `ERROR` (or `MODEM ERROR: n`): no detail.
    Error,
    /// Mobile equipment error (27.007): SIM, PIN, network...
    Cme(ErrorCode),
    /// Message service error (27.005): SMS-specific.
    Cms(ErrorCode),
    /// Huawei `COMMAND NOT SUPPORT`.
    NotSupported,
}

impl Final {
    pub fn is_ok(&self) -> bool {
        *self == Final::Ok
    }
}

impl fmt::Display for Final {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Final::Ok => f.write_str("OK"),
            Final::Error => f.write_str("ERROR"),
            Final::Cme(c) => write!(f, "+CME ERROR: {c}"),
            Final::Cms(c) => write!(f, "+CMS ERROR: {c}"),
            Final::NotSupported => f.write_str("COMMAND NOT SUPPORT"),
        }
    }
}

/// The final result `line` stands for, if it is one. `numeric` accepts `ATV0`
/// results (`0` = OK, `4` = ERROR), used only while probing a modem in an unknown state.
pub fn classify(line: &str, numeric: bool) -> Option<Final> {
    let l = line.trim();
    match l {
        "OK" => return Some(Final::Ok),
        "ERROR" => return Some(Final::Error),
        "COMMAND NOT SUPPORT" => return Some(Final::NotSupported),
        "0" if numeric => return Some(Final::Ok),
        "4" if numeric => return Some(Final::Error),
        _ => {}
    }
    if let Some(rest) = strip_prefix_ci(l, "+CME ERROR:") {
        return Some(Final::Cme(ErrorCode::parse(rest)));
    }
    if let Some(rest) = strip_prefix_ci(l, "+CMS ERROR:") {
        return Some(Final::Cms(ErrorCode::parse(rest)));
    }
    if strip_prefix_ci(l, "MODEM ERROR:").is_some() {
        return Some(Final::Error);
    }
    None
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_seen_on_real_modems() {
        assert_eq!(classify("OK", false), Some(Final::Ok));
        assert_eq!(classify("ERROR", false), Some(Final::Error));
        assert_eq!(
            classify("+CMS ERROR: 304", false),
            Some(Final::Cms(ErrorCode::Code(304)))
        );
        assert_eq!(
            classify("+CMS ERROR:500", false),
            Some(Final::Cms(ErrorCode::Code(500)))
        );
        assert_eq!(
            classify("+CME ERROR: SIM busy", false),
            Some(Final::Cme(ErrorCode::Text("SIM busy".into())))
        );
        assert_eq!(
            classify("+CMS ERROR: unknown error", false)
                .unwrap()
                .to_string(),
            "+CMS ERROR: unknown error"
        );
        assert_eq!(
            classify("COMMAND NOT SUPPORT", false),
            Some(Final::NotSupported)
        );
        assert_eq!(classify("MODEM ERROR: 3", false), Some(Final::Error));
        assert_eq!(classify("+CMGS: 12", false), None);
        assert_eq!(classify("0", false), None);
        assert_eq!(classify("0", true), Some(Final::Ok));
    }

    #[test]
    fn verbose_codes_map_to_numbers() {
        assert_eq!(ErrorCode::Text("SIM busy".into()).number(), Some(14));
        assert_eq!(ErrorCode::Code(515).number(), Some(515));
        assert_eq!(ErrorCode::Text("weird".into()).number(), None);
    }
}
