//! gammu-smsd's tables served by smsgw, on each backend: the tables made by
//! Debian's own example SQL (`/usr/share/doc/gammu-smsd/examples`), rows
//! written by the real `gammu-smsd-inject`, the daemon run as a process against
//! a simulated modem, and the tables read back with the database's own client
//! as a front-end would. Sends are counted on the simulator's record of what
//! reached the network. Kills with SIGKILL at each step of the pickup and the
//! write-back show nothing lost and nothing sent twice.

use super::daemon_faults::{database, records, sim, Reap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const EXAMPLES: &str = "/usr/share/doc/gammu-smsd/examples";

/// A gammu database of its own beside smsgw's: its url and its smsdrc lines.
/// (The SMSServer tests use it for any database read with its own client.)
pub(crate) struct Gammu {
    pub(crate) backend: &'static str,
    pub(crate) url: String,
    /// The database name (server backends) or file (SQLite).
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
}

impl Gammu {
    /// Runs SQL with the backend's own client; returns its rows, `|`-separated.
    pub(crate) fn sql(&self, sql: &str) -> Vec<String> {
        let o = match self.backend {
            "sqlite" => Command::new("sqlite3")
                .arg("-cmd")
                .arg(".timeout 10000")
                .arg(&self.name)
                .arg(sql)
                .output(),
            "postgres" => Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-At",
                    "-F",
                    "|",
                    "-d",
                ])
                .arg(&self.name)
                .arg("-c")
                .arg(sql)
                .output(),
            _ => Command::new("mariadb")
                .args(["-h", "127.0.0.1", "-u", "root", "-N", "-B", "-e"])
                .arg(sql)
                .arg(&self.name)
                .output(),
        }
        .expect("the database's client runs");
        assert!(
            o.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.replace('\t', "|"))
            .collect()
    }

    /// Creates gammu's tables from Debian's example SQL, as an admin would.
    fn create_tables(&self) {
        let file = match self.backend {
            "sqlite" => "sqlite.sql",
            "postgres" => "pgsql.sql",
            _ => "mysql.sql",
        };
        let script = Path::new(EXAMPLES).join(file);
        let o = match self.backend {
            "sqlite" => Command::new("sqlite3")
                .arg(&self.name)
                .stdin(std::fs::File::open(&script).unwrap())
                .output(),
            // Debian's script starts with CREATE LANGUAGE plpgsql, which exists
            // on every PostgreSQL since 9.0: psql reports it and goes on.
            "postgres" => Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-q", "-d"])
                .arg(&self.name)
                .arg("-f")
                .arg(&script)
                .output(),
            _ => Command::new("mariadb")
                .args(["-h", "127.0.0.1", "-u", "root"])
                .arg(&self.name)
                .stdin(std::fs::File::open(&script).unwrap())
                .output(),
        }
        .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v = if self.backend == "postgres" {
            "\"Version\""
        } else {
            "Version"
        };
        assert_eq!(self.sql(&format!("SELECT {v} FROM gammu")), ["17"]);
    }

    /// The real gammu-smsd-inject, configured for this database.
    fn inject(&self, args: &[&str]) -> i64 {
        let rc = self.dir.join("smsdrc");
        let db = match self.backend {
            "sqlite" => format!(
                "driver = sqlite3\ndatabase = {}\ndbdir = {}\n",
                Path::new(&self.name).file_name().unwrap().to_string_lossy(),
                self.dir.display()
            ),
            "postgres" => format!(
                "driver = native_pgsql\nhost = 127.0.0.1\nuser = postgres\npassword =\ndatabase = {}\n",
                self.name
            ),
            _ => format!(
                "driver = native_mysql\nhost = 127.0.0.1\nuser = root\npassword =\ndatabase = {}\n",
                self.name
            ),
        };
        std::fs::write(
            &rc,
            format!(
                "[gammu]\ndevice = /dev/null\nconnection = at\n\n[smsd]\nservice = sql\n{db}logfile = {}\n",
                self.dir.join("gammu.log").display()
            ),
        )
        .unwrap();
        let o = Command::new("gammu-smsd-inject")
            .arg("-c")
            .arg(&rc)
            .args(args)
            .output()
            .expect("gammu-smsd-inject (Debian's gammu-smsd) is installed by scripts/test");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{out} {}",
            String::from_utf8_lossy(&o.stderr)
        );
        out.lines()
            .find_map(|l| l.strip_prefix("Written message with ID "))
            .and_then(|id| id.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ID in {out}"))
    }
}

async fn setup(backend: &'static str, dir: &Path) -> Option<(String, Gammu, Vec<String>)> {
    let (url, own_drop) = database(backend, dir).await?;
    let gdir = dir.join("g");
    std::fs::create_dir_all(&gdir).unwrap();
    let (gurl, name, mut drops) = match backend {
        "sqlite" => {
            let f = gdir.join("gammu.db");
            (
                format!("sqlite://{}", f.display()),
                f.display().to_string(),
                vec![],
            )
        }
        _ => {
            let (gurl, gdrop) = database(backend, &gdir).await?;
            let name = gurl.rsplit('/').next().unwrap().to_string();
            let (admin, sql) = gdrop.unwrap();
            drop(admin);
            (gurl, name, vec![sql])
        }
    };
    if let Some((_, sql)) = own_drop {
        drops.push(sql);
    }
    Some((
        url,
        Gammu {
            backend,
            url: gurl,
            name,
            dir: gdir,
        },
        drops,
    ))
}

fn daemon(cfg: &Path, failpoint: Option<&str>) -> Child {
    let env: Vec<(&str, &str)> = failpoint
        .map(|f| ("SMSGW_FAILPOINT", f))
        .into_iter()
        .collect();
    super::restart::daemon(cfg, &cfg.with_extension("log"), &env)
}

fn write_config(dir: &Path, url: &str, g: &Gammu, modems: &[&str]) -> PathBuf {
    let cfg = dir.join("smsgw.toml");
    let modems: String = modems
        .iter()
        .map(|m| {
            format!(
                "[[modem]]\nid = \"{m}\"\ndevice = \"{}\"\nsend_timeout_secs = 5\n\n",
                dir.join(m).display()
            )
        })
        .collect();
    std::fs::write(
        &cfg,
        format!(
            "[database]\nurl = \"{url}\"\n\n[status]\nsocket = \"\"\n\n{modems}\
             [sending]\npoll_secs = 1\nretry_base_secs = 1\nretry_max_secs = 2\n\n\
             [compat]\ngammu = true\ngammu_url = \"{}\"\ngammu_poll_ms = 200\n",
            g.url
        ),
    )
    .unwrap();
    cfg
}

async fn wait_for(what: &str, secs: u64, log: &Path, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {secs} s; daemon log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn drop_all(backend: &str, drops: Vec<String>) {
    if drops.is_empty() {
        return;
    }
    let admin_url = if backend == "postgres" {
        "postgres://postgres@127.0.0.1:5432/test"
    } else {
        "mysql://root@127.0.0.1:3306/test"
    };
    if let Ok(a) = smsgw::store::Store::connect(admin_url).await {
        for d in drops {
            let _ = a.execute_raw(&d).await;
        }
    }
}

/// Two UCS-2 parts, however split.
const GREETING: &str = "尊敬的客户：中秋佳节将至，祝您和家人身体健康、阖家幸福、万事如意！本店会员日全场八折，积分可抵现金，详询门店。预约请回复姓名与时间，我们将尽快与您联系确认。";

async fn sent_once_with_outcomes_as_gammu_writes_them(backend: &'static str) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let Some((url, g, drops)) = setup(backend, d).await else {
        return;
    };
    g.create_tables();
    // Rows no sender should have written, each ending alone with gammu's Error.
    let cols = |c: &str| match backend {
        "mysql" => format!("`{c}`"),
        _ => format!("\"{c}\""),
    };
    let insert = |vals: &[(&str, &str)]| {
        let names: Vec<String> = vals.iter().map(|(c, _)| cols(c)).collect();
        let values: Vec<&str> = vals.iter().map(|(_, v)| *v).collect();
        g.sql(&format!(
            "INSERT INTO outbox ({}) VALUES ({})",
            names.join(", "),
            values.join(", ")
        ));
    };
    // First in the table: a SenderID longer than smsgw's own modem_group
    // column takes (MariaDB refuses it). It must end alone, not hold up the rows
    // behind it.
    let long_sender = format!("'{}'", "x".repeat(100));
    insert(&[
        ("DestinationNumber", "'13800138009'"),
        ("TextDecoded", "'long sender'"),
        ("SenderID", &long_sender),
        ("CreatorID", "'t'"),
    ]);
    // What scripts and HIS systems write: gammu-smsd-inject's common forms.
    let plain = g.inject(&[
        "TEXT",
        "13800138000",
        "-report",
        "-text",
        "hello from gammu",
    ]);
    let long = g.inject(&[
        "TEXT",
        "13800138001",
        "-report",
        "-unicode",
        "-autolen",
        "200",
        "-text",
        GREETING,
    ]);
    let short = g.inject(&[
        "TEXT",
        "13800138002",
        "-unicode",
        "-text",
        "您的预约号是 17",
    ]);
    insert(&[
        ("DestinationNumber", "'13800138003'"),
        ("TextDecoded", "'*100#'"),
        ("Class", "127"),
        ("CreatorID", "'t'"),
    ]);
    insert(&[
        ("DestinationNumber", "'no number'"),
        ("TextDecoded", "'x'"),
        ("CreatorID", "'t'"),
    ]);
    let old = match backend {
        "sqlite" => "datetime('now', '-2 hours')",
        "postgres" => "LOCALTIMESTAMP - interval '2 hours'",
        _ => "NOW() - INTERVAL 2 HOUR",
    };
    let yes = if backend == "postgres" {
        "true"
    } else {
        "'true'"
    };
    insert(&[
        ("DestinationNumber", "'13800138004'"),
        ("TextDecoded", "'part 1 of 3'"),
        ("MultiPart", yes),
        ("UDH", "'050003AA0301'"),
        ("InsertIntoDB", old),
        ("CreatorID", "'t'"),
    ]);
    insert(&[
        ("DestinationNumber", "'13800138005'"),
        ("Text", "NULL"),
        ("UDH", "NULL"),
        ("Class", "NULL"),
        ("RelativeValidity", "NULL"),
        ("SenderID", "NULL"),
        ("DeliveryReport", "NULL"),
        ("Retries", "NULL"),
        ("Priority", "NULL"),
        ("TextDecoded", "''"),
        ("CreatorID", "''"),
    ]);
    // A front-end's own column (Kalkun adds some) must not bother smsgw.
    g.sql(&format!(
        "ALTER TABLE sentitems ADD COLUMN {} INTEGER DEFAULT 1",
        cols("id_folder")
    ));

    // Two ports of a pool that report one IMEI (gammu issue #334).
    let mut sims = Reap(vec![sim(d, "s1", &[]), sim(d, "s2", &[])]);
    let cfg = write_config(d, &url, &g, &["s1", "s2"]);
    let log = cfg.with_extension("log");
    let _daemon = Reap(vec![daemon(&cfg, None)]);
    wait_for("gammu's outbox emptied", 60, &log, || {
        g.sql("SELECT COUNT(*) FROM outbox") == ["0"]
    })
    .await;
    assert_eq!(g.sql("SELECT COUNT(*) FROM outbox_multipart"), ["0"]);
    // Reports arrive 200 ms after each part; wait for them on sentitems.
    let status_of = |id: i64| {
        g.sql(&format!(
            "SELECT {}, {}, {}, {} FROM sentitems WHERE {} = {id} ORDER BY {}",
            cols("SequencePosition"),
            cols("Status"),
            cols("TPMR"),
            cols("SenderID"),
            cols("ID"),
            cols("SequencePosition")
        ))
    };
    wait_for("delivery reports on sentitems", 30, &log, || {
        status_of(plain).iter().all(|r| r.contains("|DeliveryOK|"))
            && status_of(long).len() == 2
            && status_of(long).iter().all(|r| r.contains("|DeliveryOK|"))
    })
    .await;
    // On the network: each message once, the long one in its two parts.
    let recs = records(d);
    let to = |n: &str| recs.iter().filter(|r| r.to.ends_with(n)).count();
    assert_eq!(to("13800138000"), 1, "{recs:?}");
    assert_eq!(to("13800138001"), 2, "{recs:?}");
    assert_eq!(to("13800138002"), 1, "{recs:?}");
    for n in ["13800138003", "13800138004", "13800138005", "13800138009"] {
        assert_eq!(to(n), 0, "{n} must not be sent: {recs:?}");
    }
    assert_eq!(recs.len(), 4, "{recs:?}");
    // sentitems as gammu leaves them: one row per part, TPMR and phone set.
    let p = status_of(plain);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("1|DeliveryOK|") && p[0].ends_with("|s1"),
        "{p:?}"
    );
    let tpmr: i64 = p[0].split('|').nth(2).unwrap().parse().unwrap();
    assert!((0..=255).contains(&tpmr), "{p:?}");
    let l = status_of(long);
    assert!(l[0].starts_with("1|") && l[1].starts_with("2|"), "{l:?}");
    let s = status_of(short);
    assert_eq!(s.len(), 1);
    assert!(s[0].starts_with("1|SendingOKNoReport|"), "{s:?}");
    // The writer's text and UDH are on the rows.
    let udh = g.sql(&format!(
        "SELECT {} FROM sentitems WHERE {} = {long} ORDER BY {}",
        cols("UDH"),
        cols("ID"),
        cols("SequencePosition")
    ));
    assert!(
        udh[0].ends_with("0201") && udh[1].ends_with("0202"),
        "{udh:?}"
    );
    let text = g.sql(&format!(
        "SELECT {} FROM sentitems WHERE {} = {plain}",
        cols("TextDecoded"),
        cols("ID")
    ));
    assert_eq!(text, ["hello from gammu"]);
    // The bad rows: gammu's Error status, alone.
    let errors = g.sql(&format!(
        "SELECT {}, {} FROM sentitems WHERE {} = 'Error' ORDER BY {}",
        cols("DestinationNumber"),
        cols("SequencePosition"),
        cols("Status"),
        cols("ID")
    ));
    assert_eq!(
        errors,
        [
            "13800138009|1",
            "13800138003|1",
            "no number|1",
            "13800138004|1",
            "13800138005|1"
        ],
        "{errors:?}"
    );

    // An incoming long message (three parts on the air) reaches gammu's inbox
    // so that a front-end's join by UDH (Kalkun's: first parts and single
    // rows, each followed by the rows sharing its UDH prefix) reads it whole.
    let incoming = format!("{GREETING}{GREETING}");
    use std::io::Write;
    writeln!(
        sims.0[0].stdin.as_mut().unwrap(),
        "incoming +8613912345678 {incoming}"
    )
    .unwrap();
    let inbox = |g: &Gammu| {
        g.sql(&format!(
            "SELECT {}, {}, {}, {}, {} FROM inbox ORDER BY {}",
            cols("ID"),
            cols("SenderNumber"),
            cols("UDH"),
            cols("RecipientID"),
            cols("Processed"),
            cols("ID")
        ))
    };
    wait_for("the incoming message in gammu's inbox", 30, &log, || {
        !inbox(&g).is_empty()
    })
    .await;
    let rows = inbox(&g);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let f: Vec<&str> = rows[0].split('|').collect();
    assert_eq!(&f[1..4], ["+8613912345678", "", "s1"], "{rows:?}");
    assert!(["false", "f", "0"].contains(&f[4]), "Processed {rows:?}");
    let (udh_prefix, len) = match backend {
        "mysql" => ("LEFT(a.`UDH`, LENGTH(a.`UDH`) - 2)", "LENGTH"),
        "postgres" => ("left(a.\"UDH\", length(a.\"UDH\") - 2)", "length"),
        _ => ("substr(a.UDH, 1, length(a.UDH) - 2)", "length"),
    };
    let joined = g.sql(
        &format!(
            "SELECT a.{id}, a.{text} FROM inbox a WHERE a.{udh} = '' \
         UNION ALL SELECT a.{id}, b.{text} FROM inbox a JOIN inbox b \
           ON b.{sender} = a.{sender} AND {len}(b.{udh}) = {len}(a.{udh}) \
           AND b.{udh} LIKE CONCAT({udh_prefix}, '%') \
         WHERE a.{udh} <> '' AND a.{udh} LIKE '%01' ORDER BY 1",
            id = cols("ID"),
            text = cols("TextDecoded"),
            udh = cols("UDH"),
            sender = cols("SenderNumber"),
        )
        .replace("CONCAT(", if backend == "sqlite" { "(" } else { "CONCAT(" })
        .replace(
            ", '%')",
            if backend == "sqlite" {
                " || '%')"
            } else {
                ", '%')"
            },
        ),
    );
    assert_eq!(joined.len(), 1, "{joined:?}");
    assert!(joined[0].ends_with(&incoming), "{joined:?}");
    // phones: a row per port, though both report one IMEI, refreshed.
    let phones = |g: &Gammu| {
        g.sql(&format!(
            "SELECT {}, {}, {} FROM phones ORDER BY {}",
            cols("ID"),
            cols("IMEI"),
            cols("Sent"),
            cols("ID")
        ))
    };
    wait_for("phones rows counting the sent parts", 30, &log, || {
        let p = phones(&g);
        let sent: i64 = p
            .iter()
            .map(|r| r.rsplit('|').next().unwrap().parse::<i64>().unwrap())
            .sum();
        p.len() == 2 && sent == 4
    })
    .await;
    let p = phones(&g);
    assert!(p[0].starts_with("s1|") && p[0].contains("/s1|"), "{p:?}");
    assert!(p[1].starts_with("s2|") && p[1].contains("/s2|"), "{p:?}");
    drop(_daemon);
    drop_all(backend, drops).await;
}

async fn kills_at_each_step_lose_and_repeat_nothing(backend: &'static str) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let Some((url, g, drops)) = setup(backend, d).await else {
        return;
    };
    g.create_tables();
    let ids: Vec<i64> = (0..4)
        .map(|i| {
            let n = format!("1390000000{i}");
            if i % 2 == 0 {
                g.inject(&["TEXT", &n, "-text", &format!("reminder {i}")])
            } else {
                g.inject(&["TEXT", &n, "-unicode", "-autolen", "200", "-text", GREETING])
            }
        })
        .collect();
    let _sims = Reap(vec![sim(d, "s1", &[])]);
    let cfg = write_config(d, &url, &g, &["s1"]);
    let log = cfg.with_extension("log");
    // Killed after taking gammu's lock on a row but before queueing it; after
    // queueing one; after the sentitems rows but before the outbox rows go;
    // each time restarted.
    for point in [
        "gammu_after_claim:1",
        "gammu_after_enqueue:2",
        "gammu_before_delete:1",
        "gammu_before_delete:2",
    ] {
        let mut c = daemon(&cfg, Some(point));
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = c.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "{point} was never reached");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{point}: {status:?}");
    }
    let _daemon = Reap(vec![daemon(&cfg, None)]);
    // A kill while a part was on the wire leaves that message ambiguous (it
    // may have reached the network): smsgw never resends it on its own, and
    // its gammu row stays until an operator decides. Every other row ends.
    let store = smsgw::store::Store::connect(&url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let ambiguous = loop {
        let amb: i64 = store
            .counts()
            .await
            .unwrap()
            .iter()
            .filter(|(st, _, _)| st == "ambiguous")
            .map(|(_, _, n)| n)
            .sum();
        let left: i64 = g.sql("SELECT COUNT(*) FROM outbox")[0].parse().unwrap();
        if left == amb {
            break amb;
        }
        assert!(
            Instant::now() < deadline,
            "gammu's outbox still holds {left} rows, {amb} ambiguous; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let recs = records(d);
    for (i, id) in ids.iter().enumerate() {
        let n = format!("1390000000{i}");
        let parts = if i % 2 == 0 { 1 } else { 2 };
        let on_network = recs.iter().filter(|r| r.to.ends_with(&n)).count();
        let row = store.find_recipient(&n).await.unwrap();
        assert_eq!(row.len(), 1, "one smsgw row for gammu's {id}: {row:?}");
        let rows = g.sql(&format!(
            "SELECT COUNT(*) FROM sentitems WHERE {} = {id}",
            if backend == "mysql" { "`ID`" } else { "\"ID\"" }
        ));
        if row[0].state.as_str() == "ambiguous" {
            assert!(on_network <= parts, "message {id} to {n}: {recs:?}");
            assert_eq!(rows, ["0"], "an ambiguous message is not written back");
        } else {
            assert_eq!(on_network, parts, "message {id} to {n}: {recs:?}");
            assert_eq!(rows, [parts.to_string()], "sentitems of {id}");
        }
    }
    assert!(
        ambiguous <= 3,
        "a kill leaves at most its one send in doubt: {ambiguous}"
    );
    drop(_daemon);
    drop_all(backend, drops).await;
}

/// Schema 18 (gammu 1.44), upgraded from Debian's 17 as gammu's release
/// notes say: 600 rows held for tomorrow stand in front of new ones, which go
/// out at once; `SendDays` holds a row for its day; an incoming message gets
/// its grouping columns; a message the reader has processed and deleted is
/// not copied again after a restart. On SQLite the daemon runs in China's
/// zone, and a row due at gammu's local "now" goes out now (read as UTC it
/// would wait eight hours).
async fn held_rows_send_days_and_local_time(backend: &'static str) {
    use chrono::{Datelike, Duration as CDuration, FixedOffset, Utc};
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let Some((url, g, drops)) = setup(backend, d).await else {
        return;
    };
    g.create_tables();
    let q = |c: &str| match backend {
        "mysql" => format!("`{c}`"),
        _ => format!("\"{c}\""),
    };
    g.sql(&format!(
        "ALTER TABLE outbox ADD COLUMN {} INTEGER NOT NULL DEFAULT 127",
        q("SendDays")
    ));
    for c in ["MessageID", "SequencePosition", "PartCount"] {
        g.sql(&format!(
            "ALTER TABLE inbox ADD COLUMN {} INTEGER NOT NULL DEFAULT 0",
            q(c)
        ));
    }
    g.sql(&format!("UPDATE gammu SET {} = 18", q("Version")));
    // The daemon's zone: China's on SQLite (gammu writes local time there).
    let zone = if backend == "sqlite" { 8 } else { 0 };
    let local =
        |t: chrono::DateTime<Utc>| t.with_timezone(&FixedOffset::east_opt(zone * 3600).unwrap());
    let at = |t: chrono::DateTime<Utc>| local(t).format("'%Y-%m-%d %H:%M:%S'").to_string();
    let now = Utc::now();
    let tomorrow = at(now + CDuration::days(1));
    let held: Vec<String> = (0..600)
        .map(|i| format!("('1390000{i:04}', 'held {i}', {tomorrow}, 't')"))
        .collect();
    g.sql(&format!(
        "INSERT INTO outbox ({}, {}, {}, {}) VALUES {}",
        q("DestinationNumber"),
        q("TextDecoded"),
        q("SendingDateTime"),
        q("CreatorID"),
        held.join(", ")
    ));
    // gammu's "now" in its own zone, a row for today, one for two days on.
    // gammu 1.44's day mask: Monday 1 ... Sunday 64.
    let mask =
        |t: chrono::DateTime<Utc>| (1 << local(t).weekday().num_days_from_monday()).to_string();
    for (to, when, days) in [
        ("13800138100", at(now), "127".to_string()),
        ("13800138101", at(now), mask(now)),
        ("13800138102", at(now), mask(now + CDuration::days(2))),
    ] {
        g.sql(&format!(
            "INSERT INTO outbox ({}, {}, {}, {}, {}) VALUES ('{to}', 'due', {when}, {days}, 't')",
            q("DestinationNumber"),
            q("TextDecoded"),
            q("SendingDateTime"),
            q("SendDays"),
            q("CreatorID"),
        ));
    }
    // A row a gammu-smsd still running beside smsgw holds (its lock runs
    // another ten minutes): left to it.
    g.sql(&format!(
        "INSERT INTO outbox ({}, {}, {}, {}) VALUES ('13800138103', 'gammu has it', {}, 't')",
        q("DestinationNumber"),
        q("TextDecoded"),
        q("SendingTimeOut"),
        q("CreatorID"),
        at(now + CDuration::minutes(10))
    ));
    let mut sims = Reap(vec![sim(d, "s1", &[])]);
    let cfg = write_config(d, &url, &g, &["s1"]);
    let log = cfg.with_extension("log");
    let tz = if backend == "sqlite" {
        vec![("TZ", "Asia/Shanghai")]
    } else {
        vec![]
    };
    let mut daemon = Reap(vec![super::restart::daemon(&cfg, &log, &tz)]);
    let sent = |n: &str| records(d).iter().filter(|r| r.to.ends_with(n)).count();
    wait_for("the due rows behind 600 held ones sent", 40, &log, || {
        sent("13800138100") == 1 && sent("13800138101") == 1
    })
    .await;
    // sentitems in gammu's own zone.
    let dest = q("DestinationNumber");
    wait_for("the outcome on sentitems", 20, &log, || {
        g.sql(&format!(
            "SELECT COUNT(*) FROM sentitems WHERE {dest} = '13800138100'"
        )) == ["1"]
    })
    .await;
    let when = g.sql(&format!(
        "SELECT {} FROM sentitems WHERE {dest} = '13800138100'",
        q("SendingDateTime")
    ));
    let written = chrono::NaiveDateTime::parse_from_str(&when[0], "%Y-%m-%d %H:%M:%S")
        .unwrap_or_else(|e| panic!("{when:?}: {e}"));
    let off = (written - local(Utc::now()).naive_local())
        .num_seconds()
        .abs();
    assert!(
        off < 120,
        "sentitems SendingDateTime {when:?} is {off} s from gammu's local now"
    );
    // Held: for tomorrow, and for its day.
    assert_eq!(sent("13800138102"), 0);
    assert_eq!(sent("13800138103"), 0, "a row gammu-smsd holds is its own");
    assert_eq!(records(d).len(), 2, "only the due rows went out");
    assert_eq!(
        g.sql("SELECT COUNT(*) FROM outbox"),
        ["602"],
        "held rows stay in gammu's outbox until they are sent"
    );
    // An incoming message: one row, grouped as one part of its own.
    writeln!(
        sims.0[0].stdin.as_mut().unwrap(),
        "incoming +8613912345678 明天上午九点到"
    )
    .unwrap();
    let groups = || {
        g.sql(&format!(
            "SELECT {} - {}, {}, {}, {} FROM inbox",
            q("MessageID"),
            q("ID"),
            q("MessageID"),
            q("SequencePosition"),
            q("PartCount")
        ))
    };
    wait_for("the incoming message in gammu's inbox", 30, &log, || {
        groups().len() == 1
    })
    .await;
    let row = groups();
    let mid: i64 = row[0].split('|').nth(1).unwrap().parse().unwrap();
    assert!(
        row[0].starts_with("0|") && mid > 0 && row[0].ends_with("|1|1"),
        "MessageID is the row's own ID, one part of one: {row:?}"
    );
    // The reader processes and deletes it; a restart does not copy it back.
    g.sql("DELETE FROM inbox");
    for c in daemon.0.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    daemon.0.clear();
    daemon.0.push(super::restart::daemon(&cfg, &log, &tz));
    writeln!(
        sims.0[0].stdin.as_mut().unwrap(),
        "incoming +8613912345678 收到"
    )
    .unwrap();
    wait_for(
        "the next incoming message in gammu's inbox",
        30,
        &log,
        || !groups().is_empty(),
    )
    .await;
    let texts = g.sql(&format!("SELECT {} FROM inbox", q("TextDecoded")));
    assert_eq!(texts, ["收到"], "the deleted message came back");
    if backend == "sqlite" {
        // A writer that puts no time in InsertIntoDB, and an ID that comes
        // round again: the second message is not taken for the first.
        let row = |text: &str| {
            g.sql(&format!(
                "INSERT INTO outbox (ID, DestinationNumber, TextDecoded, InsertIntoDB, CreatorID) \
                 VALUES (900000, '13800138104', '{text}', 'soon', 't')"
            ))
        };
        row("first");
        wait_for("the first row with ID 900000 sent", 30, &log, || {
            sent("13800138104") == 1
                && g.sql("SELECT COUNT(*) FROM outbox WHERE ID = 900000") == ["0"]
        })
        .await;
        row("second");
        wait_for("the reused ID ended", 30, &log, || {
            g.sql("SELECT COUNT(*) FROM outbox WHERE ID = 900000") == ["0"]
        })
        .await;
        assert_eq!(
            sent("13800138104"),
            1,
            "the reused ID was not sent as the first"
        );
        let l = std::fs::read_to_string(&log).unwrap();
        assert!(
            l.contains("ID 900000 and InsertIntoDB"),
            "no reason given:\n{l}"
        );
    }
    drop(daemon);
    drop(sims);
    drop_all(backend, drops).await;
}

/// Two smsgw instances on one PostgreSQL, both with the gammu layer on: one
/// serves gammu's tables and the other stands by; killed, the first hands
/// over, and the second copies what comes after from where it stopped.
#[tokio::test]
async fn gammu_postgres_one_instance_serves_the_tables_and_another_takes_over() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let Some((url, g, drops)) = setup("postgres", d).await else {
        return;
    };
    g.create_tables();
    let (da, db) = (d.join("a"), d.join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let mut sims = Reap(vec![sim(&da, "s1", &[]), sim(&db, "s2", &[])]);
    let (cfg_a, cfg_b) = (
        write_config(&da, &url, &g, &["s1"]),
        write_config(&db, &url, &g, &["s2"]),
    );
    let (log_a, log_b) = (cfg_a.with_extension("log"), cfg_b.with_extension("log"));
    let mut a = Reap(vec![daemon(&cfg_a, None)]);
    let _b = Reap(vec![daemon(&cfg_b, None)]);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    wait_for("one instance standing by", 30, &log_b, || {
        read(&log_a).contains("standing by") || read(&log_b).contains("standing by")
    })
    .await;
    let inbox = || g.sql("SELECT \"TextDecoded\" FROM inbox ORDER BY \"ID\"");
    // A's modem receives; whichever instance serves the tables copies it.
    writeln!(
        sims.0[0].stdin.as_mut().unwrap(),
        "incoming +8613912345678 one"
    )
    .unwrap();
    wait_for("the first message in gammu's inbox", 40, &log_a, || {
        inbox().len() == 1
    })
    .await;
    assert!(
        !(read(&log_a).contains("standing by") && read(&log_b).contains("standing by")),
        "both stood by"
    );
    // Kill whichever serves; the other takes over.
    let a_serves = read(&log_b).contains("standing by");
    let (survivor_log, survivor_sim) = if a_serves {
        for c in a.0.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        a.0.clear();
        (log_b.clone(), 1)
    } else {
        drop(_b);
        (log_a.clone(), 0)
    };
    writeln!(
        sims.0[survivor_sim].stdin.as_mut().unwrap(),
        "incoming +8613912345678 two"
    )
    .unwrap();
    wait_for(
        "the second message in gammu's inbox",
        60,
        &survivor_log,
        || inbox().len() == 2,
    )
    .await;
    assert_eq!(inbox(), ["one", "two"], "each message once");
    if a_serves {
        assert!(read(&survivor_log).contains("let go; serving them"));
    }
    drop(a);
    drop(sims);
    drop_all("postgres", drops).await;
}

#[tokio::test]
async fn gammu_sqlite_held_rows_send_days_and_local_time() {
    held_rows_send_days_and_local_time("sqlite").await
}
#[tokio::test]
async fn gammu_postgres_held_rows_send_days_and_local_time() {
    held_rows_send_days_and_local_time("postgres").await
}
#[tokio::test]
async fn gammu_mysql_held_rows_send_days_and_local_time() {
    held_rows_send_days_and_local_time("mysql").await
}

#[tokio::test]
async fn gammu_sqlite_sent_once_with_outcomes_as_gammu_writes_them() {
    sent_once_with_outcomes_as_gammu_writes_them("sqlite").await
}
#[tokio::test]
async fn gammu_postgres_sent_once_with_outcomes_as_gammu_writes_them() {
    sent_once_with_outcomes_as_gammu_writes_them("postgres").await
}
#[tokio::test]
async fn gammu_mysql_sent_once_with_outcomes_as_gammu_writes_them() {
    sent_once_with_outcomes_as_gammu_writes_them("mysql").await
}
#[tokio::test]
async fn gammu_sqlite_kills_at_each_step_lose_and_repeat_nothing() {
    kills_at_each_step_lose_and_repeat_nothing("sqlite").await
}
#[tokio::test]
async fn gammu_postgres_kills_at_each_step_lose_and_repeat_nothing() {
    kills_at_each_step_lose_and_repeat_nothing("postgres").await
}
#[tokio::test]
async fn gammu_mysql_kills_at_each_step_lose_and_repeat_nothing() {
    kills_at_each_step_lose_and_repeat_nothing("mysql").await
}

/// A schema version smsgw does not read is refused at start, with the
/// versions it reads: never a guess at columns it does not know.
#[tokio::test]
async fn unknown_gammu_schema_versions_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let g = Gammu {
        backend: "sqlite",
        url: format!("sqlite://{}", tmp.path().join("gammu.db").display()),
        name: tmp.path().join("gammu.db").display().to_string(),
        dir: tmp.path().to_path_buf(),
    };
    g.create_tables();
    smsgw::compat::gammu::sync::open(&g.url).await.unwrap();
    g.sql("UPDATE gammu SET Version = 18");
    smsgw::compat::gammu::sync::open(&g.url).await.unwrap();
    for v in ["19", "16"] {
        g.sql(&format!("UPDATE gammu SET Version = {v}"));
        let e = smsgw::compat::gammu::sync::open(&g.url)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("version {v}")) && e.contains("[17, 18]"),
            "{e}"
        );
    }
    g.sql("DELETE FROM gammu");
    let e = smsgw::compat::gammu::sync::open(&g.url)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no schema version"), "{e}");
}
