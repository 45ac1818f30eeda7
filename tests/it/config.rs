//! Configuration through the binary (so environment overrides do not leak between
//! tests): file + SMSGW_* overrides, the pitfalls DEPENDENCIES.md lists, clear errors.

use std::process::{Command, Output};

fn smsgw(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_smsgw"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.env_remove("SMSGW_CONFIG");
    c.output().unwrap()
}

fn write(dir: &tempfile::TempDir, text: &str) -> String {
    let p = dir.path().join("smsgw.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

const GOOD: &str = r#"
[database]
url = "sqlite:///tmp/never-opened.db"

[[modem]]
id = "m1"
device = "/dev/serial/by-id/usb-HUAWEI_Mobile-if00-port0"
pin = "0012"
smsc = "+8613800100500"

[limits]
per_minute = 6

[quiet_hours]
timezone = "Asia/Shanghai"
greeting = "21:00-08:00"
"#;

#[test]
fn env_overrides_nested_keys_and_keeps_strings_as_strings() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, GOOD);
    let o = smsgw(
        &["check-config", "--config", &path, "--print"],
        &[
            ("SMSGW_DATABASE__URL", "postgres://smsgw:secret@db/smsgw"),
            ("SMSGW_LIMITS__PER_HOUR", "100"),
            ("SMSGW_STATUS__READ_GROUP", "0042"),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // TOML, as the configuration file is written: it can be saved and used.
    let v: toml::Value = toml::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
    assert_eq!(
        v["database"]["url"].as_str(),
        Some("postgres://smsgw:****@db/smsgw"),
        "password masked"
    );
    assert_eq!(v["limits"]["per_minute"].as_integer(), Some(6));
    assert_eq!(v["limits"]["per_hour"].as_integer(), Some(100));
    assert_eq!(
        v["status"]["read_group"].as_str(),
        Some("0042"),
        "leading zeros survive"
    );
    assert_eq!(
        v["modem"][0]["pin"].as_str(),
        Some("****"),
        "the PIN is never printed"
    );
    assert_eq!(v["quiet_hours"]["greeting"].as_str(), Some("21:00-08:00"));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("0012"));
}

#[test]
fn mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "[database]\nurl = \"oracle://x\"\n",
            "must start with sqlite://",
        ),
        ("[databse]\nurl = \"sqlite://x.db\"\n", "databse"),
        (
            "[[modem]]\nid = \"m1\"\ndevice = \"/dev/ttyUSB0\"\nbaud = 115201\n",
            "baud 115201",
        ),
        (
            "[[modem]]\nid = \"m1\"\ndevice = \"/dev/ttyUSB0\"\npin = \"12ab\"\n",
            "pin must be 4 to 8 digits",
        ),
        (
            "[[modem]]\nid = \"m1\"\ndevice = \"sim:nokia\"\n",
            "known simulator profile",
        ),
        (
            "[[modem]]\nid = \"a\"\ndevice = \"x\"\n[[modem]]\nid = \"a\"\ndevice = \"y\"\n",
            "used twice",
        ),
        ("[quiet_hours]\ntimezone = \"Mars/Olympus\"\n", "IANA zone"),
        ("[quiet_hours]\ngreeting = \"9pm-8am\"\n", "HH:MM-HH:MM"),
        ("[sending]\nmax_parts = 0\n", "max_parts"),
    ];
    for (text, needle) in cases {
        let path = write(&dir, text);
        let o = smsgw(&["check-config", "--config", &path], &[]);
        assert_eq!(o.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{text:?}: {err}");
    }
    // A device that is not there now is a warning, not an error: modems come and go.
    let path = write(
        &dir,
        "[[modem]]\nid = \"m1\"\ndevice = \"/dev/serial/by-id/usb-not-plugged-in\"\n",
    );
    let o = smsgw(&["check-config", "--config", &path], &[]);
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "warning: [[modem]] \"m1\": device /dev/serial/by-id/usb-not-plugged-in does not exist"
        ),
        "{err}"
    );
    let o = smsgw(
        &["check-config", "--config", "/nonexistent/smsgw.toml"],
        &[],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such file"));
}

#[test]
fn migrate_and_enqueue_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/state/smsgw.db", dir.path().display());
    let o = smsgw(&["migrate", "--database", &url], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("up to date"));
    let args = |key: &str| {
        vec![
            "enqueue".to_string(),
            "--database".into(),
            url.clone(),
            "--to".into(),
            "+86 138 0013 8000".into(),
            "--text".into(),
            "您的预约时间是明天上午九点".into(),
            "--category".into(),
            "reminder".into(),
            "--dedupe-key".into(),
            key.into(),
        ]
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        smsgw(&a, &[])
    };
    let first = run(args("appt-1"));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let id = String::from_utf8_lossy(&first.stdout).trim().to_string();
    assert!(id.parse::<i64>().is_ok(), "{id}");
    let again = run(args("appt-1"));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already queued"));
    let mut bad = args("appt-2");
    bad[4] = "call me".into();
    let o = run(bad);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("only digits"));
    let mut bad = args("appt-3");
    bad.extend(["--send-at".into(), "tomorrow".into()]);
    assert_eq!(run(bad).status.code(), Some(2));
    // A text the dispatcher would reject is refused at once: 15 parts > max_parts 10.
    let mut bad = args("appt-4");
    bad[6] = "长".repeat(1000);
    let o = run(bad);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("needs 15 SMS parts"), "{err}");
    // [sending] max_parts from --config applies.
    let cfg = dir.path().join("smsgw.toml");
    std::fs::write(&cfg, "[sending]\nmax_parts = 2\n").unwrap();
    let mut long = args("appt-5");
    long[6] = "长".repeat(200);
    long.extend(["--config".into(), cfg.display().to_string()]);
    let o = run(long);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Nothing was queued by the refusals.
    let o = run(args("appt-6"));
    let next = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse::<i64>()
        .unwrap();
    assert_eq!(next, id.parse::<i64>().unwrap() + 1);
}

/// The database password from a file, or from systemd's credential: a MariaDB
/// user with a password that needs encoding connects with it and is refused
/// without it. The password appears in no argument, no url in the config and
/// no output.
#[tokio::test]
async fn database_password_from_a_file_or_a_systemd_credential() {
    let admin =
        std::env::var("SMSGW_TEST_MYSQL_URL").unwrap_or("mysql://root@127.0.0.1:3306/test".into());
    let a = match smsgw::store::Store::connect(&admin).await {
        Ok(a) => a,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("MariaDB unreachable ({e}): not exercised");
            return;
        }
        Err(e) => panic!("CI=true: MariaDB must be reachable: {e}"),
    };
    let password = "p@ss:w/rd 密#1";
    a.execute_raw("CREATE USER IF NOT EXISTS 'smsgw_pw'@'%' IDENTIFIED BY 'p@ss:w/rd 密#1'")
        .await
        .unwrap();
    a.execute_raw("GRANT ALL ON test.* TO 'smsgw_pw'@'%'")
        .await
        .unwrap();
    let host = admin.split_once('@').unwrap().1;
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("db-password");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    let cfg = |extra: &str| {
        format!("[database]\nurl = \"mysql://smsgw_pw@{host}\"\n{extra}\n[[modem]]\nid = \"m1\"\ndevice = \"sim:generic\"\n")
    };
    let file = dir.path().join("with-file.toml");
    std::fs::write(&file, cfg(&format!("password_file = \"{}\"", pw.display()))).unwrap();
    // A file every local user can read holds no secret: refused, with why.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = smsgw(&["migrate", "--config", file.to_str().unwrap()], &[]);
    assert!(
        !o.status.success(),
        "a world-readable password file was used"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("other users can read"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = smsgw(&["migrate", "--config", file.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("up to date") && !out.contains("w/rd"), "{out}");

    // No password: refused by the server.
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, cfg("")).unwrap();
    let o = smsgw(&["migrate", "--config", bare.to_str().unwrap()], &[]);
    assert!(!o.status.success(), "connected without the password");

    // systemd's credential (LoadCredential=database-password:...).
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::copy(&pw, creds.join("database-password")).unwrap();
    let o = smsgw(
        &["migrate", "--config", bare.to_str().unwrap()],
        &[("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = smsgw(
        &[
            "check-config",
            "--config",
            file.to_str().unwrap(),
            "--print",
        ],
        &[],
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("w/rd"));
}
