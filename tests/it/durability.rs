//! Whether each backend's settings keep a commit through a power cut, read
//! from real servers: the defaults are named durable; a setting that loses
//! commits is named, with its value, by the store, `smsgw doctor` and the
//! daemon's log.

use super::daemon_faults::{database, migrated};
use smsgw::store::{SqliteSync, Store};
use std::process::Command;

fn names(d: &smsgw::store::durability::Durability) -> Vec<String> {
    d.risks.iter().map(|r| r.setting.clone()).collect()
}

#[tokio::test]
async fn sqlite_is_durable_with_full_and_named_with_normal() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("d.db").display());
    let s = Store::connect(&url).await.unwrap();
    let d = s.durability().await.unwrap();
    assert!(d.durable(), "{d:?}");
    assert!(
        d.settings
            .contains(&("synchronous".to_string(), "2".to_string())),
        "{d:?}"
    );
    assert!(d.settings.contains(&("journal_mode".into(), "wal".into())));
    drop(s);
    let s = Store::connect_with(&url, SqliteSync::Normal).await.unwrap();
    let d = s.durability().await.unwrap();
    assert_eq!(names(&d), ["synchronous"], "{d:?}");
}

#[tokio::test]
async fn postgres_defaults_are_durable_and_synchronous_commit_off_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let Some((url, drop_db)) = database("postgres", dir.path()).await else {
        return;
    };
    let s = migrated(&url).await;
    let d = s.durability().await.unwrap();
    assert!(d.durable(), "{d:?}");
    assert_eq!(d.settings.len(), 3, "{d:?}");
    drop(s);
    // As a site that "tuned" its database would: every new session of it.
    let db = url.rsplit_once('/').unwrap().1;
    let (admin, drop_sql) = drop_db.unwrap();
    admin
        .execute_raw(&format!("ALTER DATABASE {db} SET synchronous_commit = off"))
        .await
        .unwrap();
    let s = Store::connect(&url).await.unwrap();
    let d = s.durability().await.unwrap();
    assert_eq!(names(&d), ["synchronous_commit"], "{d:?}");
    drop(s);
    // The technician's view of the same database.
    let o = Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .args(["doctor", "--database", &url])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("PROBLEM  postgres synchronous_commit = off"),
        "{out}"
    );
    admin.execute_raw(&drop_sql).await.unwrap();
}

#[tokio::test]
async fn mariadb_defaults_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let Some((url, drop_db)) = database("mysql", dir.path()).await else {
        return;
    };
    let s = migrated(&url).await;
    let d = s.durability().await.unwrap();
    assert!(d.durable(), "{d:?}");
    assert!(
        d.settings
            .contains(&("outbox_engine".to_string(), "InnoDB".to_string())),
        "{d:?}"
    );
    assert!(d
        .settings
        .iter()
        .any(|(k, _)| k == "innodb_flush_log_at_trx_commit"));
    drop(s);
    let (admin, sql) = drop_db.unwrap();
    admin.execute_raw(&sql).await.unwrap();
}

/// `smsgw doctor --config` reads [database] as the daemon does: a
/// configuration that asks for `sqlite_synchronous = "normal"` is a problem,
/// the default is fine.
#[test]
fn doctor_names_a_configuration_that_loses_commits() {
    let dir = tempfile::tempdir().unwrap();
    let run = |sync: &str| {
        let cfg = dir.path().join(format!("{sync}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[database]\nurl = \"sqlite://{}\"\nsqlite_synchronous = \"{sync}\"\n",
                dir.path().join(format!("{sync}.db")).display()
            ),
        )
        .unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_smsgw"))
            .args(["doctor", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string(),
        )
    };
    let (code, out) = run("full");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok       sqlite keeps every commit"), "{out}");
    let (code, out) = run("normal");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("PROBLEM  sqlite synchronous = 1"), "{out}");
    assert!(out.contains("sqlite_synchronous = \"full\""), "{out}");
}
