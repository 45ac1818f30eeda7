//! TLS to a database on another host, against real servers this test starts
//! (PostgreSQL and MariaDB from the machine's own packages, on their own ports
//! and data directories) with their own CA, and which refuse any connection
//! without encryption. The url's usual parameters choose the mode: `sslmode`
//! and `sslrootcert` for PostgreSQL, `ssl-mode` and `ssl-ca` for MySQL/MariaDB.
//! Checked: verify-full / VERIFY_IDENTITY connects when the name matches the
//! certificate and is refused when it does not (or the CA is not given), and
//! a plain connection is refused by the server. The daemon's own CLI
//! (`smsgw migrate`) goes the same way.

use super::db_restart::free_port;
use smsgw::store::{NewMessage, Store};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// A database server binary, or None (a failure with CI=true).
fn binary(candidates: &[String]) -> Option<PathBuf> {
    let found = candidates.iter().map(PathBuf::from).find(|p| p.exists());
    if found.is_none() {
        assert!(!ci(), "CI=true and none of {candidates:?} is installed");
        eprintln!("skipped: none of {candidates:?}");
    }
    found
}

fn run(c: &mut Command) {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{c:?}: {o:?}");
}

/// A CA and a certificate for `localhost` only (not 127.0.0.1), signed by it.
fn certificates(dir: &Path) {
    let ossl = |args: &[&str]| run(Command::new("openssl").current_dir(dir).args(args));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    ossl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=smsgw test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    ossl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    ossl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// Runs `c` as `user` when we are root (servers refuse to run as root).
fn as_user(c: &mut Command, user: &str) -> (u32, u32) {
    if !nix::unistd::geteuid().is_root() {
        let (u, g) = (nix::unistd::getuid(), nix::unistd::getgid());
        return (u.as_raw(), g.as_raw());
    }
    let u = nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap_or_else(|| panic!("no user {user}"));
    c.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    (u.uid.as_raw(), u.gid.as_raw())
}

fn chown_r(p: &Path, uid: u32, gid: u32) {
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(p));
}

/// A server process, stopped (then killed) however the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the server did not listen on {port}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a connection attempt gave, as text: "ok" or the error.
async fn attempt(url: &str) -> String {
    match tokio::time::timeout(Duration::from_secs(30), Store::connect(url)).await {
        Ok(Ok(s)) => match s.migrate().await {
            Ok(()) => "ok".into(),
            Err(e) => format!("migrate: {e}"),
        },
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".into(),
    }
}

/// The checks both backends share: `good` must work end to end; each of `bad`
/// must be refused with an error that names `why`.
async fn check(good: &str, bad: &[(&str, String)]) {
    assert_eq!(attempt(good).await, "ok", "{good}");
    let s = Store::connect(good).await.unwrap();
    let id = s
        .enqueue(&NewMessage::new("+8613800138000", "经加密连接写入"))
        .await
        .unwrap()
        .id;
    assert_eq!(s.get(id).await.unwrap().unwrap().state, "queued");
    // The CLI, as an operator runs it, with the same url.
    let o = Command::new(env!("CARGO_BIN_EXE_smsgw"))
        .args(["migrate", "--database", good])
        .output()
        .unwrap();
    assert!(o.status.success(), "smsgw migrate over TLS: {o:?}");
    for (why, url) in bad {
        let got = attempt(url).await;
        assert_ne!(got, "ok", "{url} must be refused ({why})");
        assert!(
            got.to_lowercase().contains(why),
            "{url}: refused, but not for {why:?}: {got}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_the_server_name() {
    let bins: Vec<String> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| format!("{}/bin/postgres", e.path().display()))
                .collect()
        })
        .unwrap_or_default();
    let Some(postgres) = binary(&bins) else {
        return;
    };
    let bin = postgres.parent().unwrap().to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    certificates(d);
    let data = d.join("data");
    let mut init = Command::new(bin.join("initdb"));
    init.arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "--no-sync"]);
    let (uid, gid) = as_user(&mut init, "postgres");
    chown_r(d, uid, gid);
    run(&mut init);
    for f in ["server.crt", "server.key"] {
        std::fs::copy(d.join(f), data.join(f)).unwrap();
    }
    chown_r(&data, uid, gid);
    std::fs::set_permissions(
        data.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // Encrypted connections only.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n\
         host all all 0.0.0.0/0 reject\nhost all all ::/0 reject\n",
    )
    .unwrap();
    let port = free_port();
    let log = d.join("server.log");
    let mut c = Command::new(&postgres);
    c.arg("-D")
        .arg(&data)
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(d)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "ssl=on",
            "-c",
            "ssl_cert_file=server.crt",
            "-c",
            "ssl_key_file=server.key",
            "-c",
            "fsync=off",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    as_user(&mut c, "postgres");
    let _server = Server(c.spawn().unwrap());
    wait_listening(port, &log);

    let ca = d.join("ca.crt");
    let url = |host: &str, q: &str| format!("postgres://postgres@{host}:{port}/postgres?{q}");
    let ca_q = |mode: &str| format!("sslmode={mode}&sslrootcert={}", ca.display());
    check(
        &url("localhost", &ca_q("verify-full")),
        &[
            ("not valid for name", url("127.0.0.1", &ca_q("verify-full"))),
            ("unknownissuer", url("localhost", "sslmode=verify-full")),
            ("no encryption", url("localhost", "sslmode=disable")),
        ],
    )
    .await;
    // verify-ca checks the chain but not the name; require encrypts only.
    assert_eq!(attempt(&url("127.0.0.1", &ca_q("verify-ca"))).await, "ok");
    assert_eq!(attempt(&url("127.0.0.1", "sslmode=require")).await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_over_tls_verifies_the_server_name() {
    let Some(mariadbd) = binary(&["/usr/sbin/mariadbd".into(), "/usr/sbin/mysqld".into()]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    certificates(d);
    let data = d.join("data");
    std::fs::create_dir(&data).unwrap();
    let root = nix::unistd::geteuid().is_root();
    let (uid, gid) = as_user(&mut Command::new("true"), "mysql");
    chown_r(&data, uid, gid);
    std::fs::set_permissions(
        d.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let mut init = Command::new("mariadb-install-db");
    init.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
    if root {
        init.arg("--user=mysql");
    }
    run(&mut init);
    let port = free_port();
    let log = d.join("server.log");
    let mut c = Command::new(&mariadbd);
    c.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--port={port}"))
        .arg(format!("--socket={}", data.join("s.sock").display()))
        .arg(format!("--pid-file={}", data.join("s.pid").display()))
        .arg(format!("--ssl-ca={}", d.join("ca.crt").display()))
        .arg(format!("--ssl-cert={}", d.join("server.crt").display()))
        .arg(format!("--ssl-key={}", d.join("server.key").display()))
        .args([
            "--bind-address=127.0.0.1",
            "--require-secure-transport=ON",
            "--innodb-buffer-pool-size=16M",
            "--skip-log-bin",
            "--character-set-server=utf8mb4",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if root {
        c.arg("--user=mysql");
    }
    let _server = Server(c.spawn().unwrap());
    wait_listening(port, &log);

    let ca = d.join("ca.crt");
    let url = |host: &str, db: &str, q: &str| format!("mysql://root@{host}:{port}/{db}?{q}");
    let ca_q = |mode: &str| format!("ssl-mode={mode}&ssl-ca={}", ca.display());
    // The database to use, made over an encrypted connection.
    {
        use sqlx::Connection;
        let mut conn =
            sqlx::MySqlConnection::connect(&url("localhost", "mysql", &ca_q("verify_identity")))
                .await
                .unwrap();
        sqlx::query("CREATE DATABASE smsgw CHARACTER SET utf8mb4")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    check(
        &url("localhost", "smsgw", &ca_q("verify_identity")),
        &[
            (
                "not valid for name",
                url("127.0.0.1", "smsgw", &ca_q("verify_identity")),
            ),
            (
                "unknownissuer",
                url("localhost", "smsgw", "ssl-mode=verify_identity"),
            ),
            ("denied", url("localhost", "smsgw", "ssl-mode=disabled")),
        ],
    )
    .await;
    assert_eq!(
        attempt(&url("127.0.0.1", "smsgw", &ca_q("verify_ca"))).await,
        "ok"
    );
    assert_eq!(
        attempt(&url("127.0.0.1", "smsgw", "ssl-mode=required")).await,
        "ok"
    );
}
