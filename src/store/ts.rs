//! Time in the database, one type for every backend: [`Ts`] is a UTC instant
//! that SQLite stores as text (`YYYY-MM-DD HH:MM:SS.SSS`: text order is time
//! order, and other systems write it with `datetime()`), PostgreSQL as
//! `TIMESTAMPTZ` and MySQL/MariaDB as `DATETIME(6)` in a UTC session. With it one
//! SQL body serves all three backends.
//!
//! Decoding never panics: a PostgreSQL `infinity`, a year beyond chrono's range,
//! a MariaDB zero date or an SQLite text that is not a time is a decode error
//! naming the value, for the row alone.

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Decode, Encode, MySql, Postgres, Sqlite, Type};

/// A UTC instant as a column value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ts(pub DateTime<Utc>);

/// Canonical UTC time text `YYYY-MM-DD HH:MM:SS.SSS`: SQLite stores times so.
pub fn time_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// Parses the time forms found in text columns (ours, `datetime()`'s, RFC 3339,
/// MariaDB's `CAST(... AS CHAR)`).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    None
}

/// The instants smsgw accepts in a time column: years 1000 to 9999 (MySQL's
/// DATETIME range; PostgreSQL's `isfinite` values beyond it, BC dates and
/// years past 9999, are refused with a reason).
pub fn in_range(t: DateTime<Utc>) -> bool {
    use chrono::Datelike;
    (1000..=9999).contains(&t.year())
}

/// Microseconds between 1970-01-01 and 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

impl Type<Sqlite> for Ts {
    fn type_info() -> <Sqlite as sqlx::Database>::TypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &<Sqlite as sqlx::Database>::TypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for Ts {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as sqlx::Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<'q, Sqlite>>::encode(time_text(self.0), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: <Sqlite as sqlx::Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let s = <&str as Decode<'r, Sqlite>>::decode(value)?;
        parse_time(s)
            .map(Ts)
            .ok_or_else(|| format!("{s:?} is not a UTC time (YYYY-MM-DD HH:MM:SS)").into())
    }
}

impl Type<Postgres> for Ts {
    fn type_info() -> <Postgres as sqlx::Database>::TypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &<Postgres as sqlx::Database>::TypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Postgres> for Ts {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as sqlx::Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<'q, Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: <Postgres as sqlx::Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        use sqlx::postgres::PgValueFormat;
        // sqlx's own decoder adds the microseconds to a date unchecked and panics
        // on `infinity`: read them and convert with checks.
        match value.format() {
            PgValueFormat::Binary => {
                let us = <i64 as Decode<'r, Postgres>>::decode(value)?;
                match us {
                    i64::MAX => return Err("infinity is not a time".into()),
                    i64::MIN => return Err("-infinity is not a time".into()),
                    _ => {}
                }
                us.checked_add(PG_EPOCH_US)
                    .and_then(DateTime::from_timestamp_micros)
                    .map(Ts)
                    .ok_or_else(|| "a time out of range".into())
            }
            PgValueFormat::Text => {
                let s = value.as_str()?;
                parse_time(s)
                    .or_else(|| {
                        DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z")
                            .ok()
                            .map(|t| t.with_timezone(&Utc))
                    })
                    .map(Ts)
                    .ok_or_else(|| format!("{s:?} is not a time").into())
            }
        }
    }
}

impl Type<MySql> for Ts {
    fn type_info() -> <MySql as sqlx::Database>::TypeInfo {
        <DateTime<Utc> as Type<MySql>>::type_info()
    }
    fn compatible(ty: &<MySql as sqlx::Database>::TypeInfo) -> bool {
        <DateTime<Utc> as Type<MySql>>::compatible(ty)
    }
}

impl<'q> Encode<'q, MySql> for Ts {
    fn encode_by_ref(
        &self,
        buf: &mut <MySql as sqlx::Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<'q, MySql>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, MySql> for Ts {
    fn decode(value: <MySql as sqlx::Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        // A zero date ('0000-00-00') is an error here, not a panic.
        <DateTime<Utc> as Decode<'r, MySql>>::decode(value)
            .map(Ts)
            .map_err(|e| format!("not a time (a zero date?): {e}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_forms() {
        let t = parse_time("2026-11-22 08:00:00").unwrap();
        assert_eq!(parse_time("2026-11-22T08:00:00Z"), Some(t));
        assert_eq!(parse_time(&time_text(t)), Some(t));
        assert_eq!(parse_time("tomorrow"), None);
        assert_eq!(parse_time("0000-00-00 00:00:00.000000"), None);
        assert_eq!(parse_time("2026-00-00 00:00:00"), None);
        assert!(in_range(t));
        assert!(!in_range(parse_time("0999-12-31 23:59:59").unwrap()));
    }
}
