//! Rows another system can legally write, tried as it would, on each backend:
//! the most hostile value each outbox column's type admits. Each must end in a
//! final state with the reason in `last_error` (or be sent), alone: an ordinary
//! reminder queued right after it still goes out promptly. Then the refusals at
//! insert (migration 0005), and the migration itself over rows already there.
//!
//! The first part drops the insert-time refusals (triggers, CHECKs), as a
//! database administrator may, so that the values reach the dispatcher.

use super::daemon_faults::database;
use smsgw::config::{Config, Modem};
use smsgw::daemon::Daemon;
use smsgw::store::Store;
use std::time::{Duration, Instant};

fn config(url: &str) -> Config {
    let mut c = Config::default();
    c.database.url = url.into();
    c.modems = vec![Modem::new("m1", "sim:generic:5-20")];
    c.quiet_hours.windows.clear();
    c.sending.poll_secs = 1;
    c.status.socket = String::new();
    c.validate().unwrap();
    c
}

/// What each backend admits, as (what, INSERT statement).
fn hostile(backend: &str) -> Vec<(&'static str, String)> {
    let ins = |cols: &str, vals: &str| format!("INSERT INTO outbox ({cols}) VALUES ({vals})");
    match backend {
        "sqlite" => vec![
            (
                "BLOB body, not UTF-8",
                ins("recipient, body", "'10086', X'FFFE00'"),
            ),
            (
                "text body that is not UTF-8",
                ins("recipient, body", "'10086', CAST(X'C328' AS TEXT)"),
            ),
            (
                "GBK bytes as text",
                ins("recipient, body", "'10086', CAST(X'C4E3BAC3' AS TEXT)"),
            ),
            (
                "NUL in the body",
                ins("recipient, body", "'10086', 'a' || char(0) || 'b'"),
            ),
            (
                "3 MB body",
                ins(
                    "recipient, body",
                    "'10086', replace(hex(zeroblob(1500000)), '0', 'x')",
                ),
            ),
            (
                "priority 'high'",
                ins("recipient, body, priority", "'10086', 'x', 'high'"),
            ),
            (
                "64-bit priority",
                ins(
                    "recipient, body, priority",
                    "'10086', 'x', 9223372036854775807",
                ),
            ),
            (
                "priority 1.5",
                ins("recipient, body, priority", "'10086', 'x', 1.5"),
            ),
            (
                "send_at a number",
                ins("recipient, body, send_at", "'10086', 'x', 1700000000"),
            ),
            (
                "send_at not a time",
                ins("recipient, body, send_at", "'10086', 'x', 'next tuesday'"),
            ),
            (
                "expires_at a Julian day",
                ins("recipient, body, expires_at", "'10086', 'x', 2461000.5"),
            ),
            (
                "send_at a BLOB",
                ins("recipient, body, send_at", "'10086', 'x', X'00'"),
            ),
            (
                "send_at year 12026",
                ins(
                    "recipient, body, send_at",
                    "'10086', 'x', '12026-01-01 00:00:00'",
                ),
            ),
            (
                "5000-digit recipient",
                ins(
                    "recipient, body",
                    "replace(hex(zeroblob(2500)), '0', '1'), 'x'",
                ),
            ),
            ("BLOB recipient", ins("recipient, body", "X'31303038', 'x'")),
            (
                "BLOB category",
                ins("recipient, body, category", "'10086', 'x', X'FF'"),
            ),
            (
                "unknown modem group",
                ins("recipient, body, modem_group", "'10086', 'x', 'nowhere'"),
            ),
        ],
        "postgres" => vec![
            (
                "expires_at infinity",
                ins("recipient, body, expires_at", "'10086', 'x', 'infinity'"),
            ),
            (
                "expires_at -infinity",
                ins("recipient, body, expires_at", "'10086', 'x', '-infinity'"),
            ),
            (
                "send_at infinity",
                ins("recipient, body, send_at", "'10086', 'x', 'infinity'"),
            ),
            (
                "send_at -infinity",
                ins("recipient, body, send_at", "'10086', 'x', '-infinity'"),
            ),
            (
                "send_at BC",
                ins(
                    "recipient, body, send_at",
                    "'10086', 'x', '4713-01-01 00:00:00+00 BC'",
                ),
            ),
            (
                "send_at beyond chrono",
                ins(
                    "recipient, body, send_at",
                    "'10086', 'x', '294276-01-01 00:00:00+00'",
                ),
            ),
            (
                "expires_at beyond chrono",
                ins(
                    "recipient, body, expires_at",
                    "'10086', 'x', '294276-01-01 00:00:00+00'",
                ),
            ),
            (
                "5 MB body",
                ins("recipient, body", "'10086', repeat('x', 5000000)"),
            ),
            (
                "5000-digit recipient",
                ins("recipient, body", "repeat('1', 5000), 'x'"),
            ),
            (
                "unknown modem group",
                ins(
                    "recipient, body, modem_group",
                    "'10086', 'x', repeat('g', 5000)",
                ),
            ),
        ],
        _ => {
            // A permissive sql_mode, as an old application's connection may have.
            let loose = |sql: String| format!("SET SESSION sql_mode = ''; {sql}");
            vec![
                (
                    "zero send_at",
                    loose(ins(
                        "recipient, body, send_at",
                        "'10086', 'x', '0000-00-00 00:00:00'",
                    )),
                ),
                (
                    "zero month and day",
                    loose(ins(
                        "recipient, body, send_at",
                        "'10086', 'x', '2026-00-00'",
                    )),
                ),
                (
                    "zero expires_at",
                    loose(ins(
                        "recipient, body, expires_at",
                        "'10086', 'x', '0000-00-00'",
                    )),
                ),
                (
                    "priority out of range",
                    loose(ins(
                        "recipient, body, priority",
                        "'10086', 'x', 99999999999",
                    )),
                ),
                (
                    "text priority",
                    loose(ins("recipient, body, priority", "'10086', 'x', 'high'")),
                ),
                (
                    "request_report 5",
                    loose(ins("recipient, body, request_report", "'10086', 'x', 5")),
                ),
                (
                    "60 KB body",
                    ins("recipient, body", "'10086', REPEAT('x', 60000)"),
                ),
                (
                    "64-character recipient",
                    ins("recipient, body", "REPEAT('1', 64), 'x'"),
                ),
                (
                    "unknown modem group",
                    ins("recipient, body, modem_group", "'10086', 'x', 'nowhere'"),
                ),
            ]
        }
    }
}

/// Drops the insert-time refusals of migration 0005.
async fn drop_refusals(store: &Store, backend: &str) {
    let sql: &[&str] = match backend {
        "sqlite" => &[
            "DROP TRIGGER outbox_priority_integer_insert",
            "DROP TRIGGER outbox_times_text_insert",
            "DROP TRIGGER outbox_text_not_blob_insert",
        ],
        "postgres" => &[
            "ALTER TABLE outbox DROP CONSTRAINT outbox_send_at_usable",
            "ALTER TABLE outbox DROP CONSTRAINT outbox_expires_at_usable",
        ],
        _ => &[
            "ALTER TABLE outbox DROP CONSTRAINT outbox_send_at_valid",
            "ALTER TABLE outbox DROP CONSTRAINT outbox_expires_at_valid",
        ],
    };
    for s in sql {
        store.execute_raw(s).await.unwrap();
    }
}

async fn last_id(store: &Store) -> i64 {
    let mut id = 0;
    for i in 1.. {
        if store.get(i).await.unwrap().is_none() {
            break;
        }
        id = i;
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_value_ends_alone_with_a_reason_sqlite() {
    hostile_rows("sqlite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_value_ends_alone_with_a_reason_postgres() {
    hostile_rows("postgres").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_value_ends_alone_with_a_reason_mariadb() {
    hostile_rows("mysql").await
}

async fn hostile_rows(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("STATE_DIRECTORY", dir.path());
    let Some((url, drop_db)) = database(backend, dir.path()).await else {
        return;
    };
    let d = Daemon::start(
        config(&url),
        Some(format!("hostile-{backend}-{}", std::process::id())),
    )
    .await
    .unwrap();
    drop_refusals(&d.store, backend).await;
    let mut report = Vec::new();
    for (what, sql) in hostile(backend) {
        d.store
            .execute_raw(&sql)
            .await
            .unwrap_or_else(|e| panic!("{what}: the type admits it, the insert must work: {e}"));
        let bad = last_id(&d.store).await;
        // An ordinary reminder right behind it.
        let reminder = d
            .store
            .enqueue(&smsgw::store::NewMessage {
                category: Some("reminder".into()),
                ..smsgw::store::NewMessage::new("13800138000", &format!("窗口 3 请就诊 ({what})"))
            })
            .await
            .unwrap()
            .id;
        let queued = Instant::now();
        let deadline = queued + Duration::from_secs(15);
        let (bad_row, sent_after) = loop {
            let b = d.store.get(bad).await.unwrap().unwrap();
            let r = d.store.get(reminder).await.unwrap().unwrap();
            if b.state.is_final() && r.state == "sent" {
                break (b, queued.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "{backend} {what}: row {bad} is {:?} ({:?}); the reminder behind it is {}",
                b.state,
                b.last_error,
                r.state
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(
            bad_row.state == "sent" || bad_row.last_error.as_deref().is_some_and(|e| !e.is_empty()),
            "{backend} {what}: {:?} without a reason",
            bad_row.state
        );
        assert!(
            bad_row.last_error.as_deref().unwrap_or_default().len() < 600,
            "{backend} {what}: the reason stays readable"
        );
        report.push(format!(
            "{what}: {} ({}); reminder sent {:.1} s after it",
            bad_row.state,
            bad_row.last_error.unwrap_or_default(),
            sent_after.as_secs_f64()
        ));
    }
    eprintln!("{backend}:\n  {}", report.join("\n  "));
    d.shutdown().await;
    if let Some((admin, sql)) = drop_db {
        admin.execute_raw(&sql).await.unwrap();
    }
}

/// With migration 0005 in place, what the database can refuse at insert it does,
/// with an error naming what is wrong.
#[tokio::test]
async fn refused_at_insert_with_a_clear_error() {
    for backend in ["sqlite", "postgres", "mysql"] {
        let dir = tempfile::tempdir().unwrap();
        let Some((url, drop_db)) = database(backend, dir.path()).await else {
            continue;
        };
        let store = super::daemon_faults::migrated(&url).await;
        let refused: Vec<(&str, String, &str)> = match backend {
            "sqlite" => vec![
                ("priority 'high'", "INSERT INTO outbox (recipient, body, priority) VALUES ('1', 'x', 'high')".into(), "priority must be an integer"),
                ("64-bit priority", "INSERT INTO outbox (recipient, body, priority) VALUES ('1', 'x', 9223372036854775807)".into(), "priority must be an integer"),
                ("send_at a number", "INSERT INTO outbox (recipient, body, send_at) VALUES ('1', 'x', 1700000000)".into(), "UTC text"),
                ("send_at not a time", "INSERT INTO outbox (recipient, body, send_at) VALUES ('1', 'x', 'next tuesday')".into(), "UTC text"),
                ("BLOB body", "INSERT INTO outbox (recipient, body) VALUES ('1', X'FF')".into(), "not BLOBs"),
            ],
            "postgres" => vec![
                ("expires_at infinity", "INSERT INTO outbox (recipient, body, expires_at) VALUES ('1', 'x', 'infinity')".into(), "outbox_expires_at_usable"),
                ("send_at BC", "INSERT INTO outbox (recipient, body, send_at) VALUES ('1', 'x', '0044-03-15 BC')".into(), "outbox_send_at_usable"),
            ],
            _ => vec![(
                "zero date",
                "SET SESSION sql_mode = ''; INSERT INTO outbox (recipient, body, send_at) VALUES ('1', 'x', '0000-00-00')".into(),
                "outbox_send_at_valid",
            )],
        };
        for (what, sql, says) in refused {
            let e = store
                .execute_raw(&sql)
                .await
                .expect_err(&format!("{backend} {what}: accepted"))
                .to_string();
            assert!(e.contains(says), "{backend} {what}: {e}");
        }
        // Good rows still go in.
        store
            .execute_raw(
                "INSERT INTO outbox (recipient, body, priority) VALUES ('10086', '你好', 5)",
            )
            .await
            .unwrap();
        drop(store);
        if let Some((admin, sql)) = drop_db {
            admin.execute_raw(&sql).await.unwrap();
        }
    }
}

/// Migration 0005 over a database that already holds such rows (written before
/// it): waiting rows with unusable values are rejected with the reason, values
/// that mean what NULL means become NULL, and the migration itself succeeds.
#[tokio::test]
async fn the_migration_settles_rows_already_there() {
    for backend in ["sqlite", "postgres", "mysql"] {
        let dir = tempfile::tempdir().unwrap();
        let Some((url, drop_db)) = database(backend, dir.path()).await else {
            continue;
        };
        let store = super::daemon_faults::migrated(&url).await;
        // Back to before 0005.
        drop_refusals(&store, backend).await;
        let undo: &[&str] = match backend {
            "sqlite" => &[
                "DROP TRIGGER outbox_priority_integer_update",
                "DROP TRIGGER outbox_times_text_update",
                "DROP TRIGGER outbox_text_not_blob_update",
                "DROP TABLE inbox_fragments_done",
            ],
            _ => &["DROP TABLE inbox_fragments_done"],
        };
        for s in undo {
            store.execute_raw(s).await.unwrap();
        }
        store
            .execute_raw("DELETE FROM _sqlx_migrations WHERE version = 5")
            .await
            .unwrap();
        let rows: Vec<(&str, &str, Option<&str>)> = match backend {
            // (insert values, expected state, reason contains)
            "sqlite" => vec![
                (
                    "'1', 'x', 'high', NULL, NULL",
                    "rejected",
                    Some("priority 'high'"),
                ),
                ("'1', 'x', 0, 1700000000, NULL", "rejected", Some("send_at")),
                ("'1', 'x', 0, NULL, NULL", "queued", None),
            ],
            "postgres" => vec![
                (
                    "'1', 'x', 0, 'infinity', NULL",
                    "rejected",
                    Some("send_at infinity"),
                ),
                ("'1', 'x', 0, NULL, 'infinity'", "queued", None),
                ("'1', 'x', 0, '0044-03-15 BC', NULL", "rejected", Some("BC")),
            ],
            _ => vec![
                (
                    "'1', 'x', 0, '0000-00-00', NULL",
                    "rejected",
                    Some("zero date"),
                ),
                (
                    "'1', 'x', 0, NULL, '2026-00-00'",
                    "rejected",
                    Some("expires_at"),
                ),
                ("'1', 'x', 0, NULL, NULL", "queued", None),
            ],
        };
        let loose = if backend == "mysql" {
            "SET SESSION sql_mode = ''; "
        } else {
            ""
        };
        for (vals, _, _) in &rows {
            store
                .execute_raw(&format!(
                    "{loose}INSERT INTO outbox (recipient, body, priority, send_at, expires_at) VALUES ({vals})"
                ))
                .await
                .unwrap();
        }
        store.migrate().await.unwrap();
        for (i, (vals, state, says)) in rows.iter().enumerate() {
            let r = store.get(i as i64 + 1).await.unwrap().unwrap();
            assert_eq!(r.state.as_str(), *state, "{backend} {vals}: {r:?}");
            if let Some(says) = says {
                let e = r.last_error.unwrap_or_default();
                assert!(e.contains(says), "{backend} {vals}: {e}");
            }
        }
        // And the refusals are in force afterwards.
        let bad = match backend {
            "sqlite" => "INSERT INTO outbox (recipient, body, priority) VALUES ('1', 'x', 'high')",
            "postgres" => "INSERT INTO outbox (recipient, body, send_at) VALUES ('1', 'x', 'infinity')",
            _ => "SET SESSION sql_mode = ''; INSERT INTO outbox (recipient, body, send_at) VALUES ('1', 'x', '0000-00-00')",
        };
        assert!(store.execute_raw(bad).await.is_err(), "{backend}");
        drop(store);
        if let Some((admin, sql)) = drop_db {
            admin.execute_raw(&sql).await.unwrap();
        }
    }
}
