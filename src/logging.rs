//! Where the daemon's logs go and how they look: standard error, which systemd
//! hands to the journal. The default `journald` format leaves the timestamp to
//! the journal and starts each line with its syslog priority (`<3>` error,
//! `<4>` warning, `<6>` info, `<7>` debug), which journald reads off the stream
//! (SyslogLevelPrefix=, on by default), so `journalctl -p warning -u smsgw` works.
//! `text` adds timestamps for a terminal; `json` writes one JSON object per line.
//!
//! Whatever the format, one event is one line: [`one_line`] escapes every
//! control character a field could carry (a GSM-7 sender or an SMS text may
//! hold a newline, an outbox row anything) and cuts an event at
//! [`MAX_LINE`] bytes, below journald's own line limit, so no value from the
//! network or another system can start a forged journal entry.

use std::borrow::Cow;
use std::fmt;
use std::io::Write;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Syslog priority of a tracing level (RFC 5424 severities).
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Wraps a formatter, prefixing each line with `<priority>`.
pub struct SyslogPrefix<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for SyslogPrefix<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// The longest event written, in bytes. journald splits longer lines
/// (LineMax=, 48 KiB by default) and the continuation would be a line of its own.
pub const MAX_LINE: usize = 16 * 1024;

/// `event` (one formatted event, its final newline optional) as exactly one
/// line: CR, LF and the other C0 controls but tab become `\r`, `\n`, `\xNN`;
/// U+0085, U+2028 and U+2029 (lines to some readers) become `\u{..}`; ESC is kept
/// only with `keep_esc` (the terminal's colours; field values are already
/// sanitized by tracing-subscriber). The result ends in one `\n`.
pub fn one_line(event: &str, keep_esc: bool) -> Cow<'_, str> {
    let body = event.strip_suffix('\n').unwrap_or(event);
    let clean = |c: char| {
        (c == '\t' || (keep_esc && c == '\x1b') || !c.is_control())
            && !matches!(c, '\u{2028}' | '\u{2029}')
    };
    if body.len() <= MAX_LINE && body.chars().all(clean) {
        return if body.len() < event.len() {
            Cow::Borrowed(event)
        } else {
            Cow::Owned(format!("{event}\n"))
        };
    }
    let mut out = String::with_capacity(body.len().min(MAX_LINE) + 32);
    for (i, c) in body.char_indices() {
        if out.len() >= MAX_LINE {
            out.push_str(&format!(" [... {} more bytes cut]", body.len() - i));
            break;
        }
        match c {
            c if clean(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    out.push('\n');
    Cow::Owned(out)
}

/// [`one_line`] for `format = "json"`: serde_json already escapes C0 controls,
/// so what is left (DEL, C1, U+2028/2029, only ever inside strings) becomes
/// `\uXXXX`, which keeps the line valid JSON. An event too long is replaced by
/// a valid one saying so, with its beginning.
pub fn json_line(event: &str) -> Cow<'_, str> {
    let body = event.strip_suffix('\n').unwrap_or(event);
    let odd = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if body.len() > MAX_LINE {
        let head: String = body.chars().take(MAX_LINE / 8).collect();
        let v = serde_json::json!({
            "level": "WARN",
            "fields": {"message": "log event cut", "bytes": body.len(), "head": head},
        });
        return Cow::Owned(format!("{}\n", json_line(&v.to_string()).trim_end()));
    }
    if !body.chars().any(odd) {
        return one_line(event, false);
    }
    let mut out = String::with_capacity(body.len() + 16);
    for c in body.chars() {
        if odd(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.push('\n');
    Cow::Owned(out)
}

/// Standard error through [`one_line`]: tracing-subscriber writes each event
/// into one writer, which this buffers and writes, made one line, when dropped.
#[derive(Clone, Copy)]
struct OneLineStderr {
    keep_esc: bool,
    json: bool,
}

struct EventBuf {
    buf: Vec<u8>,
    keep_esc: bool,
    json: bool,
}

impl Write for EventBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuf {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        // Nowhere to report a failed write to standard error.
        let _ = std::io::stderr().lock().write_all(
            if self.json {
                json_line(&text)
            } else {
                one_line(&text, self.keep_esc)
            }
            .as_bytes(),
        );
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for OneLineStderr {
    type Writer = EventBuf;
    fn make_writer(&'a self) -> EventBuf {
        EventBuf {
            buf: Vec::with_capacity(256),
            keep_esc: self.keep_esc,
            json: self.json,
        }
    }
}

/// Installs the subscriber for `[log]`; `RUST_LOG` overrides the level (not an
/// `SMSGW_*` name: those are configuration keys).
pub fn init(cfg: &crate::config::Log) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("smsgw={}", cfg.level)));
    use std::io::IsTerminal;
    // Colours only for a person at a terminal, never into a file or the journal.
    let ansi = std::io::stderr().is_terminal() && cfg.format == "text";
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_target(false)
        .with_writer(OneLineStderr {
            keep_esc: ansi,
            json: cfg.format == "json",
        });
    // A panic is an error entry like any other (one line, priority 3), not the
    // default hook's lines at the journal's default priority.
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::capture();
        tracing::error!(panic = %info, %backtrace, "panic");
    }));
    let _ = match cfg.format.as_str() {
        "text" => b.try_init(),
        "json" => b.json().try_init(),
        _ => {
            let inner = tracing_subscriber::fmt::format()
                .without_time()
                .with_target(false)
                .with_ansi(false);
            b.with_ansi(false)
                .event_format(SyslogPrefix(inner))
                .try_init()
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
        assert_eq!(priority(&Level::TRACE), 7);
    }

    #[test]
    fn an_event_is_one_line_whatever_its_fields_hold() {
        // A clean line is passed through untouched.
        assert!(matches!(
            one_line("<6>sent id=1\n", false),
            Cow::Borrowed(_)
        ));
        assert_eq!(one_line("<6>no newline", false), "<6>no newline\n");
        // A sender "Ab\n<3>root" from the network cannot start a journal entry.
        let forged = "<6>incoming message from=Ab\n<3>root login\r\n";
        let out = one_line(forged, false);
        assert_eq!(out, "<6>incoming message from=Ab\\n<3>root login\\r\n");
        for hostile in [
            "\0", "\x0b", "\x0c", "\x1b[2J", "\x7f", "\u{85}", "\u{2028}", "\u{2029}",
        ] {
            let event = format!("<6>x={hostile}y\n");
            let out = one_line(&event, false);
            assert_eq!(out.matches('\n').count(), 1, "{hostile:?} -> {out:?}");
            assert!(out.ends_with('\n'));
            assert!(
                !out[..out.len() - 1].chars().any(|c| c.is_control()),
                "{out:?}"
            );
            assert!(!out.contains('\u{2028}') && !out.contains('\u{2029}'));
        }
        // Tabs stay; ESC stays only for a terminal's colours.
        assert_eq!(one_line("a\tb\n", false), "a\tb\n");
        assert_eq!(
            one_line("\x1b[1mINFO\x1b[0m\n", true),
            "\x1b[1mINFO\x1b[0m\n"
        );
        assert_eq!(one_line("\x1b[1m\n", false), "\\x1b[1m\n");
        // A huge event is cut below journald's line limit, on a character boundary.
        let big = format!("<7>incoming body={}\n", "祝".repeat(40_000));
        let out = one_line(&big, false);
        assert!(out.len() < MAX_LINE + 64, "{}", out.len());
        assert!(
            out.ends_with("more bytes cut]\n"),
            "{}",
            &out[out.len() - 40..]
        );
        assert_eq!(out.matches('\n').count(), 1);
    }

    #[test]
    fn a_json_event_stays_valid_json_on_one_line() {
        let hostile = "A\n\r\u{7f}\u{85}\u{9b}\u{2028}\u{2029}\x1b[2J祝";
        let event = serde_json::json!({"fields": {"from": hostile}}).to_string() + "\n";
        let out = json_line(&event);
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        assert!(!out
            .trim_end()
            .chars()
            .any(|c| c.is_control() || c == '\u{2028}'));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["fields"]["from"], hostile, "the value survives, escaped");
        // Too long: still one valid JSON line, saying what happened.
        let big = serde_json::json!({"fields": {"body": "祝\u{2028}".repeat(20_000)}}).to_string();
        let out = json_line(&big);
        assert!(out.len() < MAX_LINE, "{}", out.len());
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["fields"]["message"], "log event cut");
        assert_eq!(v["fields"]["bytes"], big.len());
    }
}
