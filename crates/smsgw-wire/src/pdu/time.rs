//! Service-centre time stamps (TS 23.040 §9.2.3.11): seven swapped-BCD octets,
//! the last a time zone in quarter hours with a sign bit.
//!
//! Why it matters: delivery reports are matched to sent parts by time window, and
//! mismatched time zones are a known cause of unmatched reports in other gateways,
//! so every stamp converts to UTC here. Some SMSCs send a time-zone octet that is not
//! BCD (Safaricom `E1`, an Indonesian SC `C2`); that is decoded leniently.

use super::{to_hex, DecodeError, Reader};
use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use serde::{Serialize, Serializer};
use std::fmt;

/// A decoded time stamp, as the SMSC wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub year: u8,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Offset from UTC in quarter hours (+32 = UTC+8).
    pub tz_quarters: i8,
    /// The seven octets as received, kept for diagnostics.
    pub raw: [u8; 7],
    /// The time-zone octet was not BCD and was read as tens*10 + units anyway.
    pub tz_not_bcd: bool,
}

impl Timestamp {
    /// Reads seven octets. Non-BCD date or time digits are an error; a non-BCD
    /// time zone is read leniently (see [`Timestamp::tz_not_bcd`]).
    pub(crate) fn decode(
        r: &mut Reader<'_>,
        field: &'static str,
    ) -> Result<Timestamp, DecodeError> {
        let raw: [u8; 7] = r
            .take(7, field)?
            .try_into()
            .expect("take returned 7 octets");
        let mut v = [0u8; 6];
        for (i, (&o, slot)) in raw.iter().zip(v.iter_mut()).enumerate() {
            let (tens, units) = (o & 0x0F, o >> 4);
            if tens > 9 || units > 9 {
                return Err(DecodeError::invalid(
                    field,
                    format!("octet {} ({o:02X}) is not BCD in {}", i + 1, to_hex(&raw)),
                ));
            }
            *slot = tens * 10 + units;
        }
        let tz = raw[6];
        let (tens, units) = (tz & 0x07, tz >> 4);
        let magnitude = (tens * 10 + units) as i8;
        let tz_quarters = if tz & 0x08 != 0 {
            -magnitude
        } else {
            magnitude
        };
        Ok(Timestamp {
            year: v[0],
            month: v[1],
            day: v[2],
            hour: v[3],
            minute: v[4],
            second: v[5],
            tz_quarters,
            raw,
            tz_not_bcd: units > 9,
        })
    }

    /// Encodes as seven swapped-BCD octets (used for absolute validity and tests).
    pub fn encode(&self) -> [u8; 7] {
        let bcd = |v: u8| (v % 10) << 4 | (v / 10 % 10);
        let q = self.tz_quarters.unsigned_abs();
        let sign = if self.tz_quarters < 0 { 0x08 } else { 0 };
        [
            bcd(self.year),
            bcd(self.month),
            bcd(self.day),
            bcd(self.hour),
            bcd(self.minute),
            bcd(self.second),
            bcd(q) | sign,
        ]
    }

    /// The instant in UTC, or `None` when the fields are not a real date
    /// (month 13, 30 February...). Years 00..=89 are 20xx, 90..=99 are 19xx.
    pub fn to_utc(&self) -> Option<DateTime<Utc>> {
        let year = if self.year < 90 { 2000 } else { 1900 } + i32::from(self.year);
        let naive = NaiveDate::from_ymd_opt(year, self.month.into(), self.day.into())?
            .and_hms_opt(self.hour.into(), self.minute.into(), self.second.into())?;
        let offset = FixedOffset::east_opt(i32::from(self.tz_quarters) * 15 * 60)?;
        offset
            .from_local_datetime(&naive)
            .single()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// 27.005 text style: `yy/MM/dd,hh:mm:ss±zz`, zz in quarter hours.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}/{:02}/{:02},{:02}:{:02}:{:02}{}{:02}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            if self.tz_quarters < 0 { '-' } else { '+' },
            self.tz_quarters.unsigned_abs()
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Timestamp", 3)?;
        st.serialize_field("local", &self.to_string())?;
        st.serialize_field("utc", &self.to_utc().map(|t| t.to_rfc3339()))?;
        st.serialize_field("tz_not_bcd", &self.tz_not_bcd)?;
        st.end()
    }
}

/// Minutes a relative TP-VP octet stands for (TS 23.040 §9.2.3.12.1).
pub fn relative_vp_minutes(octet: u8) -> u32 {
    let v = u32::from(octet);
    match octet {
        0..=143 => (v + 1) * 5,
        144..=167 => 12 * 60 + (v - 143) * 30,
        168..=196 => (v - 166) * 24 * 60,
        _ => (v - 192) * 7 * 24 * 60,
    }
}

/// The smallest relative TP-VP octet that covers `minutes` (5 minutes at the
/// least, 63 weeks at the most).
pub fn relative_vp_octet(minutes: u32) -> u8 {
    let v = if minutes <= 12 * 60 {
        minutes.div_ceil(5).max(1) - 1
    } else if minutes <= 24 * 60 {
        143 + (minutes - 12 * 60).div_ceil(30)
    } else if minutes <= 30 * 24 * 60 {
        166 + minutes.div_ceil(24 * 60)
    } else {
        192 + minutes.div_ceil(7 * 24 * 60)
    };
    v.min(255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(hex: &str) -> Result<Timestamp, DecodeError> {
        let b = super::super::from_hex(hex).unwrap();
        Timestamp::decode(&mut Reader::new(&b), "scts")
    }

    #[test]
    fn decodes_china_time_to_utc() {
        let t = ts("62112210000023").unwrap();
        assert_eq!(t.to_string(), "26/11/22,01:00:00+32");
        assert_eq!(
            t.to_utc().unwrap().to_rfc3339(),
            "2026-11-21T17:00:00+00:00"
        );
        assert_eq!(t.encode(), t.raw);
    }

    #[test]
    fn negative_zone() {
        let t = ts("6211221000000A").unwrap();
        assert_eq!(t.tz_quarters, -20);
        assert_eq!(
            t.to_utc().unwrap().to_rfc3339(),
            "2026-11-22T06:00:00+00:00"
        );
    }

    #[test]
    fn non_bcd_zone_is_lenient_but_flagged() {
        let t = ts("610103409544C2").unwrap();
        assert_eq!(t.tz_quarters, 32);
        assert!(t.tz_not_bcd);
    }

    #[test]
    fn non_bcd_date_is_an_error_naming_the_field() {
        let e = ts("6A0103409544C2").unwrap_err();
        assert_eq!(e.field(), "scts");
        assert!(e.to_string().contains("not BCD"));
    }

    #[test]
    fn relative_validity_covers_the_request() {
        for octet in 0..=255u8 {
            assert_eq!(relative_vp_octet(relative_vp_minutes(octet)), octet);
        }
        for minutes in [
            0,
            1,
            5,
            6,
            719,
            720,
            721,
            1440,
            1441,
            2 * 1440 + 1,
            31 * 1440,
            10_000_000,
        ] {
            let o = relative_vp_octet(minutes);
            assert!(
                relative_vp_minutes(o) >= minutes.min(63 * 7 * 1440),
                "{minutes} -> {o}"
            );
            if o > 0 {
                assert!(
                    relative_vp_minutes(o - 1) < minutes,
                    "{minutes} -> {o} is not the smallest"
                );
            }
        }
    }

    #[test]
    fn impossible_date_has_no_utc() {
        assert_eq!(ts("62312210000023").unwrap().to_utc(), None);
    }
}
