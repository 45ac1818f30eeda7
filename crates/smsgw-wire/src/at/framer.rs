//! Cuts the byte stream from a modem into lines and `>` prompts.
//!
//! Why it exists: real modems end lines with CR LF, a bare CR (command echo),
//! CR CR LF (Huawei) or a bare LF; the `AT+CMGS` prompt comes as `\r\n> `,
//! `\r\n>\r\n` (SIMCom), `\r> ` or `> ` followed by an echo of the PDU, and never
//! with a line terminator after `> `, so a plain line reader waits forever. The
//! buffer is bounded: an overlong line (binary garbage from a wrong baud rate) is
//! dropped up to the next terminator and reported, never grown without limit.

/// What the framer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A non-empty line without its terminator (lossily decoded as UTF-8).
    Line(String),
    /// The `>` prompt at the start of a line (trailing spaces swallowed).
    Prompt,
    /// A line longer than [`MAX_LINE`] was dropped.
    Overflow { discarded: usize },
}

/// The longest line kept. The longest legitimate line is a `+CMGL`/`+CMGR` PDU
/// (176 octets from a SIM record = 352 hex digits) or an `AT+CLAC` listing.
pub const MAX_LINE: usize = 2048;

/// Incremental framer; feed it whatever each `read` returned.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Bytes dropped from the current overlong line, while skipping to its end.
    discarding: Option<usize>,
    /// Just emitted a prompt: swallow the spaces after it.
    after_prompt: bool,
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; complete frames are appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Frame>) {
        for &b in bytes {
            if let Some(n) = self.discarding.as_mut() {
                if b == b'\r' || b == b'\n' {
                    out.push(Frame::Overflow { discarded: *n });
                    self.discarding = None;
                } else {
                    *n += 1;
                }
                continue;
            }
            if self.after_prompt {
                if b == b' ' {
                    continue;
                }
                self.after_prompt = false;
            }
            match b {
                b'\r' | b'\n' => self.flush_line(out),
                b'>' if self.buf.is_empty() => {
                    out.push(Frame::Prompt);
                    self.after_prompt = true;
                }
                0 => {} // NUL padding some modems emit after power-up
                _ => {
                    self.buf.push(b);
                    if self.buf.len() > MAX_LINE {
                        self.discarding = Some(self.buf.len());
                        self.buf.clear();
                    }
                }
            }
        }
    }

    /// Bytes held for an unfinished line (for diagnostics: a modem that stops mid-line).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets any partial line (after the port is reopened).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    fn flush_line(&mut self, out: &mut Vec<Frame>) {
        if self.buf.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.buf);
        let line = line.trim();
        if !line.is_empty() {
            out.push(Frame::Line(line.to_string()));
        }
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut f = Framer::new();
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out);
        }
        out
    }

    fn line(s: &str) -> Frame {
        Frame::Line(s.into())
    }

    #[test]
    fn line_endings_real_modems_use() {
        assert_eq!(
            frames(&[
                b"\r\nOK\r\n",
                b"ATE0\r",
                b"\r\r\n^MODE:5\r\r\n",
                b"\nERROR\n"
            ]),
            [line("OK"), line("ATE0"), line("^MODE:5"), line("ERROR")]
        );
    }

    #[test]
    fn every_prompt_variant() {
        // spec, SIMCom bare '>' + CRLF, CR only, LF only, prompt + PDU echo, echo on.
        let cases: &[&[u8]] = &[
            b"\r\n> ",
            b"\r\n>\r\n",
            b"\r> ",
            b"\n>",
            b"\r\n> 0041000B91",
            b"AT+CMGS=26\r\r\n> ",
        ];
        for c in cases {
            let f = frames(&[c]);
            assert!(
                f.contains(&Frame::Prompt),
                "{:?} -> {f:?}",
                String::from_utf8_lossy(c)
            );
        }
        let mut f = Framer::new();
        let mut out = Vec::new();
        f.push(b"\r\n> 0041000B91\r\n", &mut out);
        assert_eq!(out, [Frame::Prompt, line("0041000B91")]);
    }

    #[test]
    fn split_reads_join() {
        assert_eq!(
            frames(&[b"\r\n+CM", b"GS: 1", b"2\r", b"\n\r\nO", b"K\r\n"]),
            [line("+CMGS: 12"), line("OK")]
        );
        assert_eq!(frames(&[b"\r\n>", b" ", b" "]), [Frame::Prompt]);
    }

    #[test]
    fn overlong_garbage_is_bounded_and_reported() {
        let garbage = vec![0xFFu8; MAX_LINE * 3];
        let mut f = Framer::new();
        let mut out = Vec::new();
        f.push(&garbage, &mut out);
        assert!(f.pending().len() <= MAX_LINE);
        f.push(b"\r\nOK\r\n", &mut out);
        assert_eq!(
            out,
            [
                Frame::Overflow {
                    discarded: MAX_LINE * 3
                },
                line("OK")
            ]
        );
    }

    #[test]
    fn invalid_utf8_is_lossy() {
        assert_eq!(frames(&[b"\xC3\x28abc\r\n"]), [line("\u{FFFD}(abc")]);
    }
}
