//! The SMS PDU codec (3GPP TS 23.040 TPDUs, TS 23.038 alphabets), pure code.
//!
//! Why it exists: the daemon talks to modems in PDU mode only, because text mode
//! cannot carry Chinese reliably nor concatenated messages. Everything here takes
//! bytes or text and returns values: no I/O, no clock, so it is tested exhaustively
//! (captured vectors, property tests, fuzzing).
//!
//! - [`split`]: choose GSM-7 or UCS2, cut text into parts, build SMS-SUBMIT PDUs.
//! - [`decode`](mod@decode): SMS-DELIVER, SMS-SUBMIT and SMS-STATUS-REPORT, with or without the
//!   SMSC prefix, leniently where real modems are known to be slightly wrong (each
//!   leniency is reported in [`Decoded::warnings`]).
//! - [`gsm7`], [`ucs2`], [`address`], [`udh`], [`dcs`], [`time`], [`status`]: the fields.
//!
//! ```
//! use smsgw_wire::pdu::{self, Layout, SubmitOptions, Tpdu};
//!
//! // A 100-character Chinese greeting needs two UCS2 parts of at most 67 characters.
//! let text = "中秋快乐，阖家幸福！".repeat(10);
//! let parts = pdu::encode_submit("+8613800138000", &text, &SubmitOptions::default())?;
//! assert_eq!(parts.len(), 2);
//!
//! // What the modem would be sent: AT+CMGS=<cmgs_len>, then the PDU and Ctrl-Z.
//! let first = pdu::decode_hex(&parts[0].pdu, Layout::WithSmsc)?;
//! assert_eq!(first.tpdu_len, parts[0].cmgs_len);
//! let Tpdu::Submit(submit) = first.tpdu else { unreachable!() };
//! assert_eq!(submit.user_data.concat().map(|c| (c.seq, c.total)), Some((1, 2)));
//! assert!(submit.status_report_request);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod address;
pub mod build;
pub mod dcs;
pub mod decode;
pub mod gsm7;
pub mod split;
pub mod status;
pub mod time;
pub mod ucs2;
pub mod udh;

pub use address::Address;
pub use dcs::{Alphabet, Dcs};
pub use decode::{
    decode, decode_hex, Body, Decoded, Deliver, Layout, Smsc, StatusReport, Submit, Tpdu, UserData,
    Validity,
};
pub use split::{encode_submit, plan, ConcatRef, EncodedPart, Encoding, Plan, SubmitOptions};
pub use status::{StatusClass, TpStatus};
pub use time::Timestamp;
pub use udh::{Concat, UdhElement};

/// Why a PDU could not be decoded. Every variant names the field at fault, so a
/// technician reading a log line knows where the modem's PDU went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The text given is not an even-length string of hex digits.
    #[error("not a hex PDU: {0}")]
    Hex(String),
    /// The PDU ends inside `field`.
    #[error("{field}: truncated (needs {need} octet(s), {have} left)")]
    Truncated {
        field: &'static str,
        need: usize,
        have: usize,
    },
    /// `field` holds a value the specification does not allow.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl DecodeError {
    /// The TPDU field the error is about (`"hex"` for non-hex input).
    pub fn field(&self) -> &'static str {
        match self {
            DecodeError::Hex(_) => "hex",
            DecodeError::Truncated { field, .. } | DecodeError::Invalid { field, .. } => field,
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        DecodeError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Why a message could not be encoded. The daemon turns these into a `rejected`
/// outbox row with the message as `last_error`, so they are written for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A destination or SMSC number that is not `+` and digits.
    #[error("invalid {field} number {value:?}: {reason}")]
    InvalidNumber {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    /// The text needs more parts than allowed.
    #[error("text needs {needed} parts, more than the maximum of {max}")]
    TooManyParts { needed: usize, max: usize },
    /// An option outside its range (for example a maximum of 0 parts).
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: &'static str,
    },
}

/// Cursor over PDU octets; every read names the field it is reading.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                field,
                need: n,
                have: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Everything not read yet (consumes it).
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

/// Uppercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xF) as usize] as char);
    }
    s
}

/// Parses hex (either case, surrounding whitespace ignored) into octets.
pub fn from_hex(hex: &str) -> Result<Vec<u8>, DecodeError> {
    let hex = hex.trim().as_bytes();
    if !hex.len().is_multiple_of(2) {
        return Err(DecodeError::Hex(format!(
            "odd number of hex digits ({})",
            hex.len()
        )));
    }
    let nibble = |c: u8, i: usize| -> Result<u8, DecodeError> {
        (c as char).to_digit(16).map(|d| d as u8).ok_or_else(|| {
            DecodeError::Hex(format!(
                "character {:?} at offset {i} is not a hex digit",
                c as char
            ))
        })
    };
    hex.chunks_exact(2)
        .enumerate()
        .map(|(i, p)| Ok(nibble(p[0], 2 * i)? << 4 | nibble(p[1], 2 * i + 1)?))
        .collect()
}

pub(crate) mod serde_hex {
    //! Serializers that print octets as the uppercase hex technicians read in logs.
    use serde::Serializer;

    pub fn u8<S: Serializer>(v: &u8, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(&[*v]))
    }

    pub fn opt_u8<S: Serializer>(v: &Option<u8>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => u8(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn bytes<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        assert_eq!(from_hex(" 0aFf \n").unwrap(), vec![0x0A, 0xFF]);
        assert_eq!(to_hex(&[0x0A, 0xFF]), "0AFF");
        assert!(matches!(from_hex("abc"), Err(DecodeError::Hex(_))));
        assert!(matches!(from_hex("zz"), Err(DecodeError::Hex(_))));
        assert!(matches!(from_hex("é1"), Err(DecodeError::Hex(_))));
    }
}
