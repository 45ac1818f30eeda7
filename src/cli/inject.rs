//! `smsgw inject`: gammu-smsd-inject's common command line, so that a script
//! written for gammu changes only the command's name. Parsing is pure
//! ([`parse`]); the message is then queued as `smsgw enqueue` queues it, through
//! the same contract check, and the answer is gammu's own line
//! (`Written message with ID N`), which scripts parse.

use chrono::{DateTime, Duration, Utc};

/// What a gammu-smsd-inject command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inject {
    pub to: String,
    /// `None`: read from standard input (`-text` not given).
    pub text: Option<String>,
    /// `-len N` / `-autolen N`: at most this many characters are sent.
    pub max_chars: Option<usize>,
    pub report: bool,
    pub flash: bool,
    /// `-validity`: given up after this long.
    pub validity: Option<Duration>,
    /// Options accepted for compatibility that change nothing here, with why.
    pub ignored: Vec<String>,
}

/// gammu's validity names (`-validity HOUR`...) or a number of minutes... as
/// gammu reads them: HOUR, 6HOURS, DAY, 3DAYS, WEEK, MAX.
fn validity(v: &str) -> Result<Option<Duration>, String> {
    Ok(Some(match v.to_ascii_uppercase().as_str() {
        "HOUR" => Duration::hours(1),
        "6HOURS" => Duration::hours(6),
        "DAY" => Duration::days(1),
        "3DAYS" => Duration::days(3),
        "WEEK" => Duration::weeks(1),
        "MAX" => return Ok(None),
        other => {
            return Err(format!(
                "-validity {other}: HOUR, 6HOURS, DAY, 3DAYS, WEEK or MAX"
            ))
        }
    }))
}

/// Parses `TEXT NUMBER [options]` (the part after gammu-smsd-inject's `-c`).
pub fn parse(args: &[String]) -> Result<Inject, String> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some(t) if t.eq_ignore_ascii_case("TEXT") => {}
        Some(other) => {
            return Err(format!(
                "message type {other}: smsgw injects TEXT messages (gammu's EMS, MMS and ringtone types are not supported)"
            ))
        }
        None => return Err("usage: smsgw inject TEXT NUMBER [-text TEXT] [-unicode] [-len N] [-autolen N] [-report] [-flash] [-validity V] [-smscnumber N]".into()),
    }
    let to = it
        .next()
        .filter(|n| !n.starts_with('-'))
        .ok_or("TEXT needs the recipient's number")?
        .clone();
    let mut m = Inject {
        to,
        text: None,
        max_chars: None,
        report: false,
        flash: false,
        validity: None,
        ignored: Vec::new(),
    };
    let value = |opt: &str, it: &mut std::slice::Iter<String>| {
        it.next()
            .cloned()
            .ok_or_else(|| format!("{opt} needs a value"))
    };
    while let Some(opt) = it.next() {
        match opt.as_str() {
            "-text" => m.text = Some(value(opt, &mut it)?),
            "-unicode" => m.ignored.push(
                "-unicode: smsgw sends UCS-2 whenever the text needs it, GSM 7-bit otherwise"
                    .into(),
            ),
            "-len" | "-autolen" => {
                let v = value(opt, &mut it)?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("{opt} {v}: not a number of characters"))?;
                m.max_chars = Some(n);
            }
            "-report" => m.report = true,
            "-flash" => m.flash = true,
            "-validity" => m.validity = validity(&value(opt, &mut it)?)?,
            "-smscnumber" => {
                let v = value(opt, &mut it)?;
                m.ignored.push(format!(
                    "-smscnumber {v}: each modem sends through its own SMSC ([[modem]] smsc)"
                ));
            }
            other => return Err(format!("option {other} is not one smsgw inject knows")),
        }
    }
    Ok(m)
}

/// The text to queue: `-text` or standard input (one trailing newline
/// dropped, as a shell's `echo` adds it), cut to `-len`.
pub fn text(m: &Inject, stdin: impl FnOnce() -> std::io::Result<String>) -> Result<String, String> {
    let mut t = match &m.text {
        Some(t) => t.clone(),
        None => {
            let s = stdin().map_err(|e| format!("reading the text from standard input: {e}"))?;
            s.strip_suffix('\n')
                .map(|s| s.strip_suffix('\r').unwrap_or(s))
                .unwrap_or(&s)
                .to_string()
        }
    };
    if let Some(n) = m.max_chars {
        t = t.chars().take(n).collect();
    }
    Ok(t)
}

/// When `-validity` makes smsgw give up.
pub fn expires_at(m: &Inject, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    m.validity.map(|v| now + v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn gammus_common_forms() {
        let m = parse(&args(&[
            "TEXT",
            "13800138000",
            "-text",
            "hi",
            "-report",
            "-flash",
        ]))
        .unwrap();
        assert_eq!(m.to, "13800138000");
        assert_eq!(m.text.as_deref(), Some("hi"));
        assert!(m.report && m.flash);
        let m = parse(&args(&[
            "TEXT",
            "+8613800138000",
            "-unicode",
            "-len",
            "5",
            "-validity",
            "DAY",
        ]))
        .unwrap();
        assert_eq!((m.text, m.max_chars), (None, Some(5)));
        assert_eq!(m.validity, Some(Duration::days(1)));
        assert_eq!(m.ignored.len(), 1);
        let m = parse(&args(&[
            "text",
            "1",
            "-autolen",
            "300",
            "-smscnumber",
            "+8613800100500",
        ]))
        .unwrap();
        assert_eq!(m.max_chars, Some(300));
        assert!(m.ignored[0].contains("own SMSC"));
        assert_eq!(
            text(&m, || Ok("from stdin\n".into())).unwrap(),
            "from stdin"
        );
        let cut = Inject {
            max_chars: Some(3),
            ..m
        };
        assert_eq!(text(&cut, || Ok("尊敬的客户".into())).unwrap(), "尊敬的");
    }

    #[test]
    fn mistakes_are_named() {
        for (a, want) in [
            (&["MMS", "1"][..], "message type MMS"),
            (&[][..], "usage"),
            (&["TEXT"][..], "recipient"),
            (&["TEXT", "-text"][..], "recipient"),
            (&["TEXT", "1", "-text"][..], "-text needs a value"),
            (&["TEXT", "1", "-len", "x"][..], "not a number"),
            (&["TEXT", "1", "-validity", "YEAR"][..], "-validity YEAR"),
            (&["TEXT", "1", "-bogus"][..], "-bogus"),
        ] {
            let e = parse(&args(a)).unwrap_err();
            assert!(e.contains(want), "{a:?}: {e}");
        }
    }
}
