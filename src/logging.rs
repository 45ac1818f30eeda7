//! Where the daemon's logs go and how they look: standard error, which systemd
//! hands to the journal. The default `journald` format leaves the timestamp to
//! the journal and starts each line with its syslog priority (`<3>` error,
//! `<4>` warning, `<6>` info, `<7>` debug), which journald reads off the stream
//! (SyslogLevelPrefix=, on by default), so `journalctl -p warning -u smsgw` works.
//! `text` adds timestamps for a terminal; `json` writes one JSON object per line.

use std::fmt;
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

/// Installs the subscriber for `[log]`; `RUST_LOG` overrides the level (not an
/// `SMSGW_*` name: those are configuration keys).
pub fn init(cfg: &crate::config::Log) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("smsgw={}", cfg.level)));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal, never into a file or the journal.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_writer(std::io::stderr);
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
}
