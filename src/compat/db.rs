//! A database another tool owns (gammu-smsd's, SMSServer's), reached
//! through its own pool on any of the three backends: quoting, placeholders,
//! every column read as text, and its times converted to and from UTC. The
//! tool-specific statements live with each layer (`gammu/db.rs`,
//! `smsserver/db.rs`), as `impl Foreign` blocks on this type.

use crate::store::{redact_url, Result, StoreError};
use chrono::{Local, NaiveDateTime, TimeZone, Utc};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// The pool, on whichever backend it is.
#[derive(Debug, Clone)]
pub enum Pools {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    Mysql(MySqlPool),
}

/// How a tool stores its times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Times {
    /// The machine's local time, except MySQL's `timestamp` columns, which
    /// the server converts to and from the session's zone (UTC for smsgw).
    /// gammu-smsd: SQLite `datetime('now', 'localtime')`, PostgreSQL
    /// `LOCALTIMESTAMP` and `now()` into `timestamp without time zone`, MySQL
    /// `NOW()` into `timestamp`.
    LocalButMysql,
    /// The machine's local time on every backend (SMSServer's Java dates).
    Local,
}

/// Another tool's database.
#[derive(Debug, Clone)]
pub struct Foreign {
    pub pool: Pools,
    pub times: Times,
}

/// Runs the same body on whichever backend `$f` is, with `DB` its sqlx type.
macro_rules! on_pool {
    ($f:expr, $pool:ident => $body:expr) => {
        match &$f.pool {
            $crate::compat::db::Pools::Sqlite($pool) => {
                #[allow(dead_code)]
                type DB = sqlx::Sqlite;
                $body
            }
            $crate::compat::db::Pools::Postgres($pool) => {
                #[allow(dead_code)]
                type DB = sqlx::Postgres;
                $body
            }
            $crate::compat::db::Pools::Mysql($pool) => {
                #[allow(dead_code)]
                type DB = sqlx::MySql;
                $body
            }
        }
    };
}
pub(crate) use on_pool;

impl Foreign {
    pub async fn connect(url: &str, times: Times) -> Result<Foreign> {
        let err = |backend, source| StoreError::Connect {
            backend,
            target: redact_url(url),
            source,
        };
        if url.starts_with("sqlite:") {
            // Someone else's file: its journal mode is left as its owner set it.
            let o = SqliteConnectOptions::from_str(url)
                .map_err(|e| err("sqlite", e))?
                .create_if_missing(false)
                .busy_timeout(Duration::from_secs(15));
            let p = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(o)
                .await
                .map_err(|e| err("sqlite", e))?;
            Ok(Foreign {
                pool: Pools::Sqlite(p),
                times,
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let o = PgConnectOptions::from_str(url).map_err(|e| err("postgres", e))?;
            let p = PgPoolOptions::new()
                .max_connections(2)
                .connect_with(o)
                .await
                .map_err(|e| err("postgres", e))?;
            Ok(Foreign {
                pool: Pools::Postgres(p),
                times,
            })
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let u = url.replacen("mariadb://", "mysql://", 1);
            let o = MySqlConnectOptions::from_str(&u).map_err(|e| err("mysql", e))?;
            let p = MySqlPoolOptions::new()
                .max_connections(2)
                .connect_with(o)
                .await
                .map_err(|e| err("mysql", e))?;
            Ok(Foreign {
                pool: Pools::Mysql(p),
                times,
            })
        } else {
            Err(StoreError::UnknownScheme(redact_url(url)))
        }
    }

    pub(crate) fn is_pg(&self) -> bool {
        matches!(self.pool, Pools::Postgres(_))
    }

    /// A column name, quoted (gammu's names are mixed case).
    pub(crate) fn c(&self, name: &str) -> String {
        match self.pool {
            Pools::Mysql(_) => format!("`{name}`"),
            _ => format!("\"{name}\""),
        }
    }

    /// A column read as text.
    pub(crate) fn as_text(&self, name: &str) -> String {
        match self.pool {
            Pools::Mysql(_) => format!("CAST(`{name}` AS CHAR) AS `{name}`"),
            _ => format!("CAST(\"{name}\" AS TEXT) AS \"{name}\""),
        }
    }

    /// A time column read as text (`YYYY-MM-DD HH:MM:SS`).
    pub(crate) fn time_as_text(&self, name: &str) -> String {
        match self.pool {
            Pools::Mysql(_) => format!("DATE_FORMAT(`{name}`, '%Y-%m-%d %H:%i:%s') AS `{name}`"),
            _ => self.as_text(name),
        }
    }

    /// Whether this backend's time columns hold local time.
    fn local_times(&self) -> bool {
        match self.times {
            Times::Local => true,
            Times::LocalButMysql => !matches!(self.pool, Pools::Mysql(_)),
        }
    }

    /// `?` placeholders in this backend's style.
    pub(crate) fn ph(&self, sql: &str) -> String {
        if !self.is_pg() {
            return sql.to_string();
        }
        let mut out = String::with_capacity(sql.len() + 8);
        let mut n = 0;
        for ch in sql.chars() {
            if ch == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(ch);
            }
        }
        out
    }

    /// A time placeholder: UTC text in, the column's own time out.
    pub(crate) fn time_in(&self) -> &'static str {
        if self.is_pg() {
            "CAST(? AS timestamp)"
        } else {
            "?"
        }
    }

    /// UTC -> the text this backend's time columns take.
    pub(crate) fn time_out(&self, utc: &str) -> String {
        if !self.local_times() {
            return utc.to_string();
        }
        match NaiveDateTime::parse_from_str(utc, "%Y-%m-%d %H:%M:%S") {
            Ok(n) => Utc
                .from_utc_datetime(&n)
                .with_timezone(&Local)
                .naive_local()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            Err(_) => utc.to_string(),
        }
    }

    /// A time read from this backend -> UTC text.
    pub(crate) fn time_read(&self, v: Option<String>) -> Option<String> {
        let v = v?;
        if !self.local_times() {
            return Some(v);
        }
        let local = NaiveDateTime::parse_from_str(v.trim(), "%Y-%m-%d %H:%M:%S%.f").ok();
        match local.and_then(|n| Local.from_local_datetime(&n).earliest()) {
            Some(t) => Some(
                t.with_timezone(&Utc)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string(),
            ),
            None => Some(v),
        }
    }
}
