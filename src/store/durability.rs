//! Whether the database keeps a commit through a power cut. smsgw's promise
//! (never send a part twice by its own fault) rests on it: the in-flight
//! marker is committed before a part goes to the modem, and a restart that
//! finds it settles the row instead of sending it again. A database that
//! acknowledges a commit it has not made durable loses that marker at a power
//! cut, and the part goes out again. Which settings do that is decided here,
//! from the values the backend reports ([`judge`], pure); the store reads them
//! (`Dialect::SETTINGS`), the daemon logs the verdict at start, `smsgw
//! status` and `smsgw doctor --database` show it.

use serde::{Deserialize, Serialize};

/// A setting that loses committed writes, with what it costs and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Risk {
    /// The setting's name as the database spells it.
    pub setting: String,
    /// Its value in force.
    pub value: String,
    /// What a power cut (or an OS crash) does with it.
    pub loses: String,
    /// What to set instead.
    pub fix: String,
}

/// The settings read and the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durability {
    pub backend: String,
    /// `(name, value)` as read, in the backend's order.
    pub settings: Vec<(String, String)>,
    pub risks: Vec<Risk>,
}

impl Durability {
    pub fn durable(&self) -> bool {
        self.risks.is_empty()
    }

    /// `name=value, ...` for a log line.
    pub fn settings_line(&self) -> String {
        self.settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn off(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "0" | "off" | "false" | "no"
    )
}

/// The verdict for `backend` (`sqlite`, `postgres`, `mysql`) on the settings
/// it reported. A setting that was not reported is not judged.
pub fn judge(backend: &str, settings: &[(String, String)]) -> Durability {
    let get = |name: &str| {
        settings
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let mut risks = Vec::new();
    let mut risk = |setting: &str, value: &str, loses: &str, fix: &str| {
        risks.push(Risk {
            setting: setting.into(),
            value: value.into(),
            loses: loses.into(),
            fix: fix.into(),
        })
    };
    const RESENT: &str = "the commits since the last sync are lost at a power cut, and \
                          the messages they recorded as in flight or sent go out again";
    match backend {
        "sqlite" => {
            let wal = get("journal_mode").map(|m| m.eq_ignore_ascii_case("wal"));
            if let Some(mode) = get("journal_mode") {
                if matches!(mode.to_ascii_lowercase().as_str(), "off" | "memory") {
                    risk(
                        "journal_mode",
                        &mode,
                        "no rollback journal on disk: a power cut mid-commit corrupts the database",
                        "journal_mode = WAL (smsgw sets it)",
                    );
                }
            }
            if let Some(s) = get("synchronous") {
                // 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA. In WAL mode NORMAL syncs the
                // WAL only at a checkpoint; in a rollback journal, NORMAL still
                // syncs at each commit.
                let level = match s.to_ascii_lowercase().as_str() {
                    "0" | "off" => 0,
                    "1" | "normal" => 1,
                    "2" | "full" => 2,
                    "3" | "extra" => 3,
                    _ => 2,
                };
                if level == 0 || (level == 1 && wal != Some(false)) {
                    risk(
                        "synchronous",
                        &s,
                        RESENT,
                        "[database] sqlite_synchronous = \"full\" (the default)",
                    );
                }
            }
        }
        "postgres" => {
            if let Some(v) = get("fsync").filter(|v| off(v)) {
                risk(
                    "fsync",
                    &v,
                    "PostgreSQL never syncs: a power cut loses commits and can corrupt the cluster",
                    "fsync = on in postgresql.conf, then reload",
                );
            }
            if let Some(v) = get("synchronous_commit").filter(|v| off(v)) {
                risk(
                    "synchronous_commit",
                    &v,
                    RESENT,
                    "synchronous_commit = on (for smsgw's role alone: ALTER ROLE ... SET synchronous_commit = on)",
                );
            }
            if let Some(v) = get("full_page_writes").filter(|v| off(v)) {
                risk(
                    "full_page_writes",
                    &v,
                    "a page torn by a power cut cannot be repaired: the cluster may not start",
                    "full_page_writes = on in postgresql.conf, then reload",
                );
            }
        }
        "mysql" => {
            if let Some(v) = get("innodb_flush_log_at_trx_commit").filter(|v| v != "1") {
                risk(
                    "innodb_flush_log_at_trx_commit",
                    &v,
                    "InnoDB syncs its log about once a second, not at each commit: up to a \
                     second of commits is lost at a power cut, and the messages they \
                     recorded go out again",
                    "innodb_flush_log_at_trx_commit = 1 in the server's configuration (SET GLOBAL takes it at once)",
                );
            }
            let binlog = get("log_bin").is_some_and(|v| !off(&v));
            if binlog {
                if let Some(v) = get("sync_binlog").filter(|v| v != "1") {
                    risk(
                        "sync_binlog",
                        &v,
                        "the binary log is not synced at each commit: after a power cut, \
                         replicas and point-in-time recovery miss commits the tables kept",
                        "sync_binlog = 1 in the server's configuration",
                    );
                }
            }
            if let Some(v) = get("innodb_doublewrite").filter(|v| off(v)) {
                risk(
                    "innodb_doublewrite",
                    &v,
                    "a page torn by a power cut cannot be repaired: InnoDB may not start",
                    "innodb_doublewrite = ON",
                );
            }
            if let Some(v) = get("outbox_engine").filter(|v| !v.eq_ignore_ascii_case("innodb")) {
                risk(
                    "outbox engine",
                    &v,
                    "the outbox is not in a transactional engine: nothing smsgw writes is atomic or durable",
                    "ALTER TABLE outbox ENGINE = InnoDB (and outbox_parts, inbox)",
                );
            }
        }
        _ => {}
    }
    Durability {
        backend: backend.into(),
        settings: settings.to_vec(),
        risks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn named(d: &Durability) -> Vec<&str> {
        d.risks.iter().map(|r| r.setting.as_str()).collect()
    }

    #[test]
    fn sqlite_wal_needs_full() {
        assert!(judge(
            "sqlite",
            &s(&[("journal_mode", "wal"), ("synchronous", "2")])
        )
        .durable());
        assert!(judge(
            "sqlite",
            &s(&[("journal_mode", "wal"), ("synchronous", "3")])
        )
        .durable());
        let d = judge(
            "sqlite",
            &s(&[("journal_mode", "wal"), ("synchronous", "1")]),
        );
        assert_eq!(named(&d), ["synchronous"]);
        assert_eq!(d.risks[0].value, "1");
        // A rollback journal syncs at each commit with NORMAL; OFF never does.
        assert!(judge(
            "sqlite",
            &s(&[("journal_mode", "delete"), ("synchronous", "1")])
        )
        .durable());
        let d = judge(
            "sqlite",
            &s(&[("journal_mode", "memory"), ("synchronous", "0")]),
        );
        assert_eq!(named(&d), ["journal_mode", "synchronous"]);
    }

    #[test]
    fn postgres_settings_that_lose_commits() {
        let ok = s(&[
            ("fsync", "on"),
            ("synchronous_commit", "on"),
            ("full_page_writes", "on"),
        ]);
        assert!(judge("postgres", &ok).durable());
        // local, remote_write and remote_apply all flush locally.
        for v in ["local", "remote_write", "remote_apply"] {
            let d = judge("postgres", &s(&[("synchronous_commit", v)]));
            assert!(d.durable(), "{v}");
        }
        let d = judge(
            "postgres",
            &s(&[
                ("fsync", "off"),
                ("synchronous_commit", "off"),
                ("full_page_writes", "off"),
            ]),
        );
        assert_eq!(
            named(&d),
            ["fsync", "synchronous_commit", "full_page_writes"]
        );
    }

    #[test]
    fn mariadb_settings_that_lose_commits() {
        let ok = s(&[
            ("innodb_flush_log_at_trx_commit", "1"),
            ("log_bin", "OFF"),
            ("sync_binlog", "0"),
            ("innodb_doublewrite", "ON"),
            ("outbox_engine", "InnoDB"),
        ]);
        assert!(
            judge("mysql", &ok).durable(),
            "sync_binlog matters only with a binlog"
        );
        for v in ["0", "2"] {
            let d = judge("mysql", &s(&[("innodb_flush_log_at_trx_commit", v)]));
            assert_eq!(named(&d), ["innodb_flush_log_at_trx_commit"]);
        }
        let d = judge("mysql", &s(&[("log_bin", "ON"), ("sync_binlog", "0")]));
        assert_eq!(named(&d), ["sync_binlog"]);
        let d = judge("mysql", &s(&[("log_bin", "1"), ("sync_binlog", "1")]));
        assert!(d.durable());
        let d = judge(
            "mysql",
            &s(&[("innodb_doublewrite", "OFF"), ("outbox_engine", "MyISAM")]),
        );
        assert_eq!(named(&d), ["innodb_doublewrite", "outbox engine"]);
    }

    #[test]
    fn unknown_values_and_backends_are_not_guessed_unsafe() {
        assert!(judge("sqlite", &s(&[("synchronous", "weird")])).durable());
        assert!(judge("oracle", &s(&[("fsync", "off")])).durable());
        assert!(judge("postgres", &[]).durable());
    }
}
