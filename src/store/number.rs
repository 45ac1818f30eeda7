//! Phone numbers that identify people: opt-outs, per-recipient limits and
//! delivery reports compare numbers in E.164 form, so `+8613800138000`,
//! `008613800138000`, `8613800138000` and `13800138000` are one customer.
//!
//! A number that cannot be put in E.164 form (a short code such as `10086`, an
//! 8-digit local number without its area code, an alphanumeric sender) is
//! compared exactly, digits and letters as written (separators dropped). One
//! number is never taken for the tail of another: an opt-out from `38001380`
//! opts out nobody but `38001380`.

use serde::{Deserialize, Serialize};

/// How numbers without a country are read (`[numbers]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Numbering {
    /// The country code of numbers written without one (`86`: China).
    pub default_country_code: String,
}

impl Default for Numbering {
    fn default() -> Self {
        Numbering {
            default_country_code: "86".into(),
        }
    }
}

impl Numbering {
    /// Whether the configured country code is 1 to 3 digits.
    pub fn is_valid(&self) -> bool {
        let cc = &self.default_country_code;
        (1..=3).contains(&cc.len())
            && cc.bytes().all(|b| b.is_ascii_digit())
            && !cc.starts_with('0')
    }

    /// The E.164 form (`+` and 8 to 15 digits) of a number as written, if it has one.
    pub fn e164(&self, raw: &str) -> Option<String> {
        let cc = self.default_country_code.as_str();
        let s: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\t'))
            .collect();
        let (plus, digits) = match s.strip_prefix('+') {
            Some(d) => (true, d),
            None => (false, s.as_str()),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let e164 = |d: &str| (8..=15).contains(&d.len()).then(|| format!("+{d}"));
        if plus {
            return e164(digits);
        }
        if let Some(intl) = digits.strip_prefix("00") {
            return e164(intl);
        }
        if let Some(national) = digits.strip_prefix('0') {
            // Trunk prefix: an area code or mobile prefix follows.
            return (national.len() >= 6)
                .then(|| e164(&format!("{cc}{national}")))
                .flatten();
        }
        if cc == "86" {
            // Mainland mobile numbers: 11 digits starting with 1; written with the
            // country code but without +, 13 digits starting with 861.
            if digits.len() == 11 && digits.starts_with('1') {
                return e164(&format!("86{digits}"));
            }
            if digits.len() == 13 && digits.starts_with("861") {
                return e164(digits);
            }
            return None;
        }
        // Elsewhere a national number starts with the trunk 0: without it, and
        // long enough, it is the international form without its +.
        (digits.starts_with(cc) && digits.len() >= cc.len() + 8)
            .then(|| e164(digits))
            .flatten()
    }

    /// The form two numbers are compared in: E.164 where possible, else the
    /// number as written without separators.
    pub fn key(&self, raw: &str) -> String {
        self.e164(raw).unwrap_or_else(|| {
            raw.trim()
                .chars()
                .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\t'))
                .collect()
        })
    }

    /// Whether two numbers are the same subscriber.
    pub fn same(&self, a: &str, b: &str) -> bool {
        self.key(a) == self.key(b)
    }
}

/// The `LIKE` pattern that finds every written form of `number` in a column (its
/// last 8 digits, or all of them when shorter); candidates are then compared
/// with [`Numbering::same`]. `None` when the number has no digits.
pub fn like_pattern(number: &str) -> Option<String> {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    Some(format!("%{}", &digits[digits.len().saturating_sub(8)..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cn() -> Numbering {
        Numbering::default()
    }

    #[test]
    fn one_customer_in_every_written_form() {
        let n = cn();
        for form in [
            "+8613800138000",
            "+86 138 0013 8000",
            "008613800138000",
            "8613800138000",
            "13800138000",
            "138-0013-8000",
        ] {
            assert_eq!(n.e164(form).as_deref(), Some("+8613800138000"), "{form}");
        }
        assert!(n.same("+8613800138000", "13800138000"));
        assert!(!n.same("+8613800138000", "+8613800138001"));
        // A landline with its area code.
        assert_eq!(n.e164("010-12345678").as_deref(), Some("+861012345678"));
        let de = Numbering {
            default_country_code: "49".into(),
        };
        assert!(de.same("+4915259911630", "015259911630"));
        assert!(de.same("4915259911630", "015259911630"));
    }

    #[test]
    fn no_number_is_the_tail_of_another() {
        let n = cn();
        // A bare 8-digit local number cannot be put in E.164 form: exact only.
        assert_eq!(n.e164("38001380"), None);
        assert!(!n.same("38001380", "13838001380"));
        assert!(!n.same("38001380", "+8613838001380"));
        assert!(n.same("38001380", "3800-1380"));
        // Short codes.
        assert!(n.same("10086", "10086"));
        assert!(!n.same("10086", "110086"));
        assert!(!n.same("10086", "+8610086"));
        // An alphanumeric sender is compared as written.
        assert!(n.same("BANK", "BANK"));
        assert!(!n.same("BANK", "BANKS"));
    }

    #[test]
    fn hostile_input_never_panics() {
        let n = cn();
        for s in [
            "",
            "+",
            "00",
            "0",
            "++86",
            "+8613800138000999999",
            "१२३४५६७८९०१",
            "\0",
            &"9".repeat(5000),
        ] {
            let _ = n.e164(s);
            let _ = n.key(s);
            let _ = like_pattern(s);
        }
        assert_eq!(like_pattern("+8613800138000").as_deref(), Some("%00138000"));
        assert_eq!(like_pattern("10086").as_deref(), Some("%10086"));
        assert_eq!(like_pattern("BANK"), None);
        assert!(!Numbering {
            default_country_code: "0086".into()
        }
        .is_valid());
    }
}
