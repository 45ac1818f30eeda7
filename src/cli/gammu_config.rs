//! `smsgw import-gammu-config SMSDRC...`: gammu-smsd's configuration files
//! turned into the equivalent smsgw.toml, printed for the operator to review.
//! Pure: text in, TOML and notes out. Passwords are never copied (they would
//! end up in a terminal's scrollback and a world-readable file): the output
//! says where to put them instead.

use std::collections::BTreeMap;

/// One smsdrc: `[section]` -> key (lower case) -> value.
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().to_ascii_lowercase();
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.entry(section.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

/// A TOML string literal.
fn q(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => o.push_str(&format!("\\u{:04X}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A percent-encoded url part (user names, database names).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The translation of one or more smsdrc files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub toml: String,
    /// What could not be carried over, for the operator.
    pub notes: Vec<String>,
}

/// Translates smsdrc files (name, text), one `[[modem]]` per file.
pub fn import(files: &[(String, String)]) -> Result<Imported, String> {
    let mut notes = Vec::new();
    let mut modems = String::new();
    let mut compat = String::new();
    let mut hooks = String::new();
    let mut sending = String::new();
    for (n, (name, text)) in files.iter().enumerate() {
        let ini = parse_ini(text);
        let gammu = ini.get("gammu").cloned().unwrap_or_default();
        let smsd = ini.get("smsd").cloned().unwrap_or_default();
        if gammu.is_empty() && smsd.is_empty() {
            return Err(format!("{name}: neither a [gammu] nor an [smsd] section"));
        }
        let id = smsd
            .get("phoneid")
            .cloned()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| format!("modem{}", n + 1));
        // gammurc(5): `device`, or its older name `port`.
        let device = gammu
            .get("device")
            .or(gammu.get("port"))
            .cloned()
            .unwrap_or_default();
        modems.push_str(&format!("[[modem]]\n# from {name}\nid = {}\n", q(&id)));
        if device.is_empty() {
            notes.push(format!(
                "{name}: no [gammu] device; set device for modem {id}"
            ));
        }
        modems.push_str(&format!("device = {}\n", q(&device)));
        if let Some(conn) = gammu.get("connection") {
            let c = conn.to_ascii_lowercase();
            match c.strip_prefix("at").map(|b| b.trim_start_matches('-')) {
                Some("") => {}
                Some(b) if b.parse::<u32>().is_ok() => modems.push_str(&format!("baud = {b}\n")),
                _ => notes.push(format!(
                    "{name}: connection {conn:?} is not an AT connection: smsgw drives AT modems only"
                )),
            }
        }
        if smsd.contains_key("pin") {
            notes.push(format!(
                "{name}: the SIM PIN is not copied: add pin = \"...\" to modem {id} in the config (0640 root:smsgw)"
            ));
        }
        if let Some(smsc) = smsd.get("smsc").filter(|s| !s.is_empty()) {
            modems.push_str(&format!("smsc = {}\n", q(smsc)));
        }
        if smsd.get("phoneid").is_some_and(|p| !p.is_empty()) {
            // gammu's SenderID / PhoneID: rows for this phone go to this group.
            modems.push_str(&format!("group = {}\n", q(&id)));
        }
        if let Some(t) = smsd.get("sendtimeout").and_then(|t| t.parse::<u64>().ok()) {
            modems.push_str(&format!("send_timeout_secs = {}\n", t.max(1)));
        }
        modems.push('\n');
        let service = smsd.get("service").map(|s| s.to_ascii_lowercase());
        match service.as_deref() {
            Some("sql") | Some("mysql") | Some("pgsql") | Some("dbi") if compat.is_empty() => {
                let driver = smsd
                    .get("driver")
                    .map(|d| d.to_ascii_lowercase())
                    .or(service.clone())
                    .unwrap_or_default();
                let host = smsd.get("host").cloned().unwrap_or_else(|| "localhost".into());
                let user = smsd.get("user").cloned().unwrap_or_default();
                let db = smsd.get("database").cloned().unwrap_or_else(|| "smsd".into());
                let auth = if user.is_empty() { String::new() } else { format!("{}@", enc(&user)) };
                let url = match driver.as_str() {
                    "native_mysql" | "mysql" => Some(format!("mysql://{auth}{host}/{}", enc(&db))),
                    "native_pgsql" | "pgsql" => Some(format!("postgres://{auth}{host}/{}", enc(&db))),
                    "sqlite3" | "sqlite" => {
                        let dir = smsd.get("dbdir").cloned().unwrap_or_default();
                        let path = if db.starts_with('/') || dir.is_empty() {
                            db.clone()
                        } else {
                            format!("{}/{db}", dir.trim_end_matches('/'))
                        };
                        Some(format!("sqlite://{path}"))
                    }
                    other => {
                        notes.push(format!(
                            "{name}: SQL driver {other:?} is not one smsgw reaches (MySQL/MariaDB, PostgreSQL, SQLite)"
                        ));
                        None
                    }
                };
                if let Some(url) = url {
                    compat.push_str(&format!("[compat]\ngammu = true\ngammu_url = {}\n", q(&url)));
                    if smsd.get("password").is_some_and(|p| !p.is_empty()) {
                        compat.push_str("# The smsdrc password is not copied: put it in a file readable by the\n# smsgw user only, and name it here.\ngammu_password_file = \"/etc/smsgw/gammu-password\"\n");
                    }
                    if let Some(ms) = smsd.get("loopsleep").and_then(|s| s.parse::<u64>().ok()) {
                        compat.push_str(&format!("gammu_poll_ms = {}\n", (ms * 1000).clamp(50, 60_000)));
                    }
                    compat.push('\n');
                }
            }
            Some("sql") | Some("mysql") | Some("pgsql") | Some("dbi") => {}
            Some("files") => notes.push(format!(
                "{name}: service = files (spool directories) has no smsgw equivalent: have the writers insert into the outbox table, or use smsgw inject"
            )),
            Some(other) => notes.push(format!("{name}: service {other:?} is not served")),
            None => {}
        }
        for (key, hook) in [
            ("runonreceive", "run_on_receive"),
            ("runonsent", "run_on_sent"),
            ("runonfailure", "run_on_failure"),
        ] {
            if let Some(p) = smsd.get(key).filter(|p| !p.is_empty()) {
                if !hooks.contains(hook) {
                    hooks.push_str(&format!("{hook} = {}\n", q(p)));
                }
                if !p.starts_with('/') {
                    notes.push(format!("{name}: {hook} must be an absolute path to a program (smsgw runs it without a shell)"));
                }
            }
        }
        if let Some(r) = smsd.get("maxretries").and_then(|r| r.parse::<u32>().ok()) {
            if sending.is_empty() {
                sending = format!(
                    "[sending]\nmax_attempts = {}\n\n",
                    r.saturating_add(1).max(1)
                );
            }
        }
        for key in [
            "includenumbersfile",
            "excludenumbersfile",
            "includesmscfile",
            "excludesmscfile",
        ] {
            if smsd.contains_key(key) {
                notes.push(format!(
                    "{name}: {key} has no smsgw equivalent (opt-outs: the opt_outs table)"
                ));
            }
        }
        for section in [
            "include_numbers",
            "exclude_numbers",
            "include_smsc",
            "exclude_smsc",
        ] {
            if ini.contains_key(section) {
                notes.push(format!(
                    "{name}: [{section}] has no smsgw equivalent (opt-outs: the opt_outs table)"
                ));
            }
        }
    }
    let mut toml = String::from(
        "# smsgw.toml from gammu-smsd's configuration (smsgw import-gammu-config).\n# Review it, then see docs/operations.md for what else can be set.\n\n[database]\n# smsgw's own tables: a database other than gammu's (both have an outbox).\nurl = \"sqlite:///var/lib/smsgw/outbox/smsgw.db\"\n\n",
    );
    toml.push_str(&modems);
    toml.push_str(&compat);
    toml.push_str(&sending);
    if !hooks.is_empty() {
        toml.push_str("[hooks]\n");
        toml.push_str(&hooks);
    }
    for n in &notes {
        toml.push_str(&format!("# NOTE: {}\n", n.replace('\n', " ")));
    }
    Ok(Imported { toml, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMSDRC: &str = "[gammu]\ndevice = /dev/ttyUSB0\nconnection = at115200\n\n[smsd]\nservice = sql\ndriver = native_mysql\nhost = 127.0.0.1\nuser = smsd\npassword = s3cret\ndatabase = smsd\nPhoneID = phone1\nPIN = 1234\nRunOnReceive = /usr/local/bin/on-sms\nMaxRetries = 2\nLoopSleep = 2\nSendTimeout = 30\n[exclude_numbers]\n1 = 10086\n";

    #[test]
    fn a_gammu_sql_setup_becomes_smsgw_toml() {
        let i = import(&[("smsdrc".into(), SMSDRC.into())]).unwrap();
        let t = &i.toml;
        let cfg: crate::config::Config = toml::from_str(t).unwrap_or_else(|e| panic!("{e}\n{t}"));
        cfg.validate().unwrap_or_else(|e| panic!("{e}\n{t}"));
        assert_eq!(cfg.modems[0].id, "phone1");
        assert_eq!(cfg.modems[0].device, "/dev/ttyUSB0");
        assert_eq!(cfg.modems[0].baud, 115_200);
        assert_eq!(cfg.modems[0].group.as_deref(), Some("phone1"));
        assert_eq!(cfg.modems[0].send_timeout_secs, Some(30));
        assert!(cfg.compat.gammu);
        assert_eq!(
            cfg.compat.gammu_url.as_deref(),
            Some("mysql://smsd@127.0.0.1/smsd")
        );
        assert_eq!(cfg.compat.gammu_poll_ms, Some(2000));
        assert_eq!(
            cfg.hooks.run_on_receive.as_deref(),
            Some("/usr/local/bin/on-sms")
        );
        assert_eq!(cfg.sending.max_attempts, 3);
        // No secret is printed.
        assert!(!t.contains("s3cret") && !t.contains("1234"), "{t}");
        assert!(i.notes.iter().any(|n| n.contains("PIN")));
        assert!(i.notes.iter().any(|n| n.contains("exclude_numbers")));
    }

    #[test]
    fn two_phones_and_hostile_values() {
        let a = "[gammu]\ndevice = /dev/ttyUSB0\n[smsd]\nservice = sql\ndriver = sqlite3\ndatabase = smsd.db\ndbdir = /var/lib/gammu\n";
        let b =
            "[gammu]\ndevice = /dev/tty\"USB1\nconnection = bluerfat\n[smsd]\nservice = files\n";
        let i = import(&[("a".into(), a.into()), ("b".into(), b.into())]).unwrap();
        let cfg: crate::config::Config = toml::from_str(&i.toml).unwrap();
        assert_eq!(cfg.modems.len(), 2);
        assert_eq!(cfg.modems[1].device, "/dev/tty\"USB1");
        assert_eq!(
            cfg.compat.gammu_url.as_deref(),
            Some("sqlite:///var/lib/gammu/smsd.db")
        );
        assert!(i.notes.iter().any(|n| n.contains("not an AT connection")));
        assert!(i.notes.iter().any(|n| n.contains("service = files")));
        assert!(import(&[("c".into(), "nothing here".into())]).is_err());
    }
}
