//! The AT command engine: one command in flight, replies separated from
//! unsolicited lines, deadlines from `now`, and resynchronisation after a timeout.
//!
//! Sans-IO, like quinn-proto: the engine never reads a clock nor touches a port.
//! The caller feeds it bytes ([`Engine::handle_input`]), tells it when everything it
//! was given has been written ([`Engine::handle_written`]) and when the deadline
//! passed ([`Engine::handle_timeout`]); it drains bytes to write
//! ([`Engine::poll_transmit`]), events ([`Engine::poll_event`]) and the next deadline
//! ([`Engine::poll_timeout`]). So every timeout path is tested in virtual time.
//!
//! Rules taken from ModemManager: the timeout starts after the last byte is
//! written; the PDU of `AT+CMGS` goes out as a continuation right after the prompt;
//! consecutive timeouts are counted and any valid reply resets the count; after a
//! timeout the engine resynchronises (writes `AT`, waits for its `OK`, then lets the
//! line settle) before the next command, so a late reply never reaches the wrong
//! command. A late `+CMGS: <mr>` seen while resynchronising is reported
//! ([`Event::LateReply`]): it turns an ambiguous send into a known one.

use super::framer::{Frame, Framer};
use super::result::{classify, Final};
use super::urc::{self, is_hex_line, Registry, Urc, UrcKind};
use serde::Serialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Identifies a submitted command in the events about it.
pub type CommandId = u64;

/// Ctrl-Z: ends the PDU and sends it.
const CTRL_Z: u8 = 0x1A;
/// ESC: aborts a pending PDU entry without sending.
const ESC: u8 = 0x1B;

/// One AT command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The command line without its CR, e.g. `AT+CSQ`.
    pub line: String,
    /// For `AT+CMGS=<len>`: the hex PDU written after the prompt, then Ctrl-Z.
    pub pdu: Option<String>,
    /// Time allowed for the final result, from the last byte written (for a send:
    /// from the last byte of the PDU).
    pub timeout: Duration,
    /// Time allowed for the `>` prompt (sends only).
    pub prompt_timeout: Duration,
    /// Accept `0`/`4` as OK/ERROR (`ATV0`), while probing a modem in an unknown state.
    pub numeric_finals: bool,
    /// The response line with the command's own prefix is final (Wavecom
    /// `+CPIN: READY` without `OK`).
    pub final_on_prefix: bool,
}

impl Command {
    /// A command with the default 10 s timeout.
    pub fn new(line: impl Into<String>) -> Command {
        Command {
            line: line.into(),
            pdu: None,
            timeout: Duration::from_secs(10),
            prompt_timeout: Duration::from_secs(10),
            numeric_finals: false,
            final_on_prefix: false,
        }
    }

    /// `AT+CMGS=<cmgs_len>` followed by `pdu` after the prompt.
    pub fn send_pdu(cmgs_len: usize, pdu: impl Into<String>) -> Command {
        Command {
            pdu: Some(pdu.into()),
            timeout: Duration::from_secs(120),
            ..Command::new(format!("AT+CMGS={cmgs_len}"))
        }
    }

    pub fn timeout(mut self, t: Duration) -> Command {
        self.timeout = t;
        self
    }

    pub fn prompt_timeout(mut self, t: Duration) -> Command {
        self.prompt_timeout = t;
        self
    }

    pub fn numeric_finals(mut self) -> Command {
        self.numeric_finals = true;
        self
    }

    pub fn final_on_prefix(mut self) -> Command {
        self.final_on_prefix = true;
        self
    }

    /// The prefix of this command's information response: `AT+CSQ` -> `+CSQ:`,
    /// `AT^ICCID?` -> `^ICCID:`.
    fn response_prefix(&self) -> Option<String> {
        let rest = self
            .line
            .get(2..)
            .filter(|_| self.line[..2].eq_ignore_ascii_case("AT"))?;
        let mut chars = rest.chars();
        let sigil = chars
            .next()
            .filter(|c| matches!(c, '+' | '^' | '$' | '#' | '*'))?;
        let name: String = chars.take_while(|c| c.is_ascii_alphanumeric()).collect();
        (!name.is_empty()).then(|| format!("{sigil}{}:", name.to_ascii_uppercase()))
    }
}

/// How far a command got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Never written: it cannot have had any effect.
    Queued,
    /// Written, waiting for the prompt: no PDU was sent.
    Prompt,
    /// Waiting for the final result. `after_pdu`: the PDU and Ctrl-Z were written,
    /// so the message may have reached the network.
    Result { after_pdu: bool },
}

/// A command's information lines and final result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Response {
    pub lines: Vec<String>,
    pub result: Final,
    /// A PDU was written (and Ctrl-Z) before this result: it may have reached the network.
    pub pdu_written: bool,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The modem answered (OK or an error).
    Response(Response),
    /// No answer in time.
    Timeout(Stage),
    /// Dropped by [`Engine::abort_all`] (the port went away).
    Aborted(Stage),
}

/// What the engine reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A command finished.
    Done { id: CommandId, outcome: Outcome },
    /// An unsolicited result code.
    Urc(Urc),
    /// Lines that arrived for a command after it timed out.
    LateReply { id: CommandId, lines: Vec<String> },
    /// A line nobody expected (logged, otherwise ignored).
    Unsolicited(String),
    /// Garbage: an overlong line was dropped.
    Overflow { discarded: usize },
    /// The modem answered the resynchronisation marker: commands resume.
    Resynced,
    /// The resynchronisation marker got no answer either (it is retried).
    ResyncTimeout { attempts: u32 },
}

/// Timings of the engine itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Time allowed for the `OK` of the resynchronisation `AT`.
    pub resync_timeout: Duration,
    /// Quiet time after that `OK` in which further finals are taken as stale.
    pub settle: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            resync_timeout: Duration::from_secs(3),
            settle: Duration::from_millis(300),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Command line handed out, not yet reported written.
    WritingCommand,
    AwaitPrompt,
    /// PDU handed out, not yet reported written.
    WritingPdu,
    AwaitResult,
}

#[derive(Debug)]
struct InFlight {
    id: CommandId,
    cmd: Command,
    prefix: Option<String>,
    step: Step,
    lines: Vec<String>,
    deadline: Option<Instant>,
}

impl InFlight {
    fn stage(&self) -> Stage {
        match self.step {
            Step::WritingCommand | Step::AwaitPrompt if self.cmd.pdu.is_some() => Stage::Prompt,
            Step::WritingCommand | Step::AwaitPrompt => Stage::Result { after_pdu: false },
            Step::WritingPdu | Step::AwaitResult => Stage::Result {
                after_pdu: self.cmd.pdu.is_some(),
            },
        }
    }

    fn is_echo(&self, line: &str) -> bool {
        if line.eq_ignore_ascii_case(&self.cmd.line) {
            return true;
        }
        // Huawei echoes the PDU, cut into CRLF-separated chunks.
        let chunk = line.trim_end_matches(CTRL_Z as char);
        matches!((&self.cmd.pdu, self.step), (Some(pdu), Step::WritingPdu | Step::AwaitResult)
            if is_hex_line(chunk) && pdu.contains(chunk))
    }
}

#[derive(Debug)]
struct Resync {
    /// The command whose timeout caused this.
    after: CommandId,
    writing: bool,
    deadline: Option<Instant>,
    /// Set once the marker's OK arrived: the end of the settle window.
    settle_until: Option<Instant>,
    late_lines: Vec<String>,
    attempts: u32,
    /// Lead the marker with ESC (the timed-out command was a send).
    escape: bool,
}

#[derive(Debug)]
enum State {
    Idle,
    Busy(InFlight),
    Resync(Resync),
}

/// The engine for one modem port.
#[derive(Debug)]
pub struct Engine {
    framer: Framer,
    registry: Registry,
    config: EngineConfig,
    queue: VecDeque<(CommandId, Command)>,
    state: State,
    next_id: CommandId,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    consecutive_timeouts: u32,
    /// A `+CMT`/`+CDS` header was seen; its PDU line comes next.
    two_line: Option<(UrcKind, Option<usize>)>,
    frames: Vec<Frame>,
}

impl Engine {
    pub fn new(registry: Registry, config: EngineConfig) -> Engine {
        Engine {
            framer: Framer::new(),
            registry,
            config,
            queue: VecDeque::new(),
            state: State::Idle,
            next_id: 1,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            consecutive_timeouts: 0,
            two_line: None,
            frames: Vec::new(),
        }
    }

    /// Queues a command; it is written when the ones before it are done.
    pub fn submit(&mut self, cmd: Command) -> CommandId {
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_back((id, cmd));
        self.advance();
        id
    }

    /// Timeouts since the last valid reply.
    pub fn consecutive_timeouts(&self) -> u32 {
        self.consecutive_timeouts
    }

    /// Nothing in flight, nothing queued, not resynchronising.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle) && self.queue.is_empty()
    }

    /// Bytes to write to the port, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Idle => None,
            State::Busy(f) => f.deadline,
            State::Resync(r) => match (r.settle_until, r.deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// Everything handed out by [`Engine::poll_transmit`] has been written: arm the deadline.
    pub fn handle_written(&mut self, now: Instant) {
        match &mut self.state {
            State::Busy(f) => match f.step {
                Step::WritingCommand if f.cmd.pdu.is_some() => {
                    f.step = Step::AwaitPrompt;
                    f.deadline = Some(now + f.cmd.prompt_timeout);
                }
                Step::WritingCommand | Step::WritingPdu => {
                    f.step = Step::AwaitResult;
                    f.deadline = Some(now + f.cmd.timeout);
                }
                Step::AwaitPrompt | Step::AwaitResult => {}
            },
            State::Resync(r) if r.writing => {
                r.writing = false;
                r.deadline = Some(now + self.config.resync_timeout);
            }
            _ => {}
        }
    }

    /// Bytes read from the port.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        let mut frames = std::mem::take(&mut self.frames);
        self.framer.push(bytes, &mut frames);
        for f in frames.drain(..) {
            match f {
                Frame::Line(l) => self.handle_line(now, l),
                Frame::Prompt => self.handle_prompt(),
                Frame::Overflow { discarded } => {
                    self.events.push_back(Event::Overflow { discarded })
                }
            }
        }
        self.frames = frames;
    }

    /// The deadline from [`Engine::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::Busy(f) if f.deadline.is_some_and(|d| d <= now) => {
                let (id, stage, had_pdu) = (f.id, f.stage(), f.cmd.pdu.is_some());
                self.consecutive_timeouts += 1;
                self.events.push_back(Event::Done {
                    id,
                    outcome: Outcome::Timeout(stage),
                });
                self.start_resync(id, had_pdu, 0);
            }
            State::Resync(r) => {
                if r.settle_until.is_some_and(|s| s <= now) {
                    let (after, lines) = (r.after, std::mem::take(&mut r.late_lines));
                    if !lines.is_empty() {
                        self.events.push_back(Event::LateReply { id: after, lines });
                    }
                    self.events.push_back(Event::Resynced);
                    self.state = State::Idle;
                    self.advance();
                } else if r.settle_until.is_none() && r.deadline.is_some_and(|d| d <= now) {
                    self.consecutive_timeouts += 1;
                    let attempts = r.attempts + 1;
                    let (after, escape, lines) =
                        (r.after, r.escape, std::mem::take(&mut r.late_lines));
                    self.events.push_back(Event::ResyncTimeout { attempts });
                    self.start_resync(after, escape, attempts);
                    if let State::Resync(r) = &mut self.state {
                        r.late_lines = lines;
                    }
                }
            }
            _ => {}
        }
    }

    /// The port went away: fail the command in flight and everything queued, and
    /// forget partial input. The caller reopens the port and carries on.
    pub fn abort_all(&mut self) {
        if let State::Busy(f) = std::mem::replace(&mut self.state, State::Idle) {
            self.events.push_back(Event::Done {
                id: f.id,
                outcome: Outcome::Aborted(f.stage()),
            });
        }
        for (id, _) in self.queue.drain(..) {
            self.events.push_back(Event::Done {
                id,
                outcome: Outcome::Aborted(Stage::Queued),
            });
        }
        self.transmit.clear();
        self.framer.reset();
        self.two_line = None;
    }

    fn start_resync(&mut self, after: CommandId, escape: bool, attempts: u32) {
        // ESC first aborts a modem left waiting for PDU input; the CR after it
        // ends whatever it makes of a stray ESC in command mode.
        let mut bytes = Vec::new();
        if escape {
            bytes.extend([ESC, b'\r']);
        }
        bytes.extend(b"AT\r");
        self.transmit.push_back(bytes);
        self.state = State::Resync(Resync {
            after,
            writing: true,
            deadline: None,
            settle_until: None,
            late_lines: Vec::new(),
            attempts,
            escape,
        });
    }

    fn advance(&mut self) {
        if !matches!(self.state, State::Idle) {
            return;
        }
        let Some((id, cmd)) = self.queue.pop_front() else {
            return;
        };
        let mut bytes = cmd.line.clone().into_bytes();
        bytes.push(b'\r');
        self.transmit.push_back(bytes);
        self.state = State::Busy(InFlight {
            id,
            prefix: cmd.response_prefix(),
            cmd,
            step: Step::WritingCommand,
            lines: Vec::new(),
            deadline: None,
        });
    }

    fn complete(&mut self, result: Final) {
        if let State::Busy(f) = std::mem::replace(&mut self.state, State::Idle) {
            self.consecutive_timeouts = 0;
            let pdu_written =
                f.cmd.pdu.is_some() && matches!(f.step, Step::WritingPdu | Step::AwaitResult);
            self.events.push_back(Event::Done {
                id: f.id,
                outcome: Outcome::Response(Response {
                    lines: f.lines,
                    result,
                    pdu_written,
                }),
            });
        }
        self.advance();
    }

    fn handle_prompt(&mut self) {
        if let State::Busy(f) = &mut self.state {
            if let (Some(pdu), Step::WritingCommand | Step::AwaitPrompt) = (&f.cmd.pdu, f.step) {
                let mut bytes = pdu.clone().into_bytes();
                bytes.push(CTRL_Z);
                self.transmit.push_back(bytes);
                f.step = Step::WritingPdu;
                f.deadline = None;
                return;
            }
        }
        self.events
            .push_back(Event::Unsolicited("> (unexpected prompt)".into()));
    }

    fn handle_line(&mut self, now: Instant, line: String) {
        if let Some((kind, length)) = self.two_line.take() {
            if is_hex_line(&line) {
                let urc = match kind {
                    UrcKind::Message => Urc::Message { length, pdu: line },
                    _ => Urc::StatusReport { length, pdu: line },
                };
                self.events.push_back(Event::Urc(urc));
                return;
            }
            self.events.push_back(Event::Unsolicited(format!(
                "{kind:?} header without its PDU line"
            )));
        }
        match &mut self.state {
            State::Busy(f) => {
                if f.is_echo(&line) {
                    return;
                }
                if let Some(fin) = classify(&line, f.cmd.numeric_finals) {
                    self.complete(fin);
                    return;
                }
                if f.prefix.as_deref().is_some_and(|p| line.starts_with(p)) {
                    f.lines.push(line);
                    if f.cmd.final_on_prefix {
                        self.complete(Final::Ok);
                    }
                    return;
                }
                if let Some(kind) = self.registry.classify(&line) {
                    self.handle_urc(kind, line);
                    return;
                }
                // Information text without a prefix (IMEI, model, a +CMGR PDU line).
                f.lines.push(line);
            }
            State::Resync(r) => {
                if let Some(fin) = classify(&line, false) {
                    if fin.is_ok() && r.settle_until.is_none() {
                        // The first OK: ours, or a late one with ours right behind it.
                        r.settle_until = Some(now + self.config.settle);
                        r.deadline = None;
                        self.consecutive_timeouts = 0;
                    }
                    return;
                }
                if let Some(kind) = self.registry.classify(&line) {
                    self.handle_urc(kind, line);
                    return;
                }
                if !line.eq_ignore_ascii_case("AT") {
                    r.late_lines.push(line);
                }
            }
            State::Idle => {
                if let Some(kind) = self.registry.classify(&line) {
                    self.handle_urc(kind, line);
                } else {
                    self.events.push_back(Event::Unsolicited(line));
                }
            }
        }
    }

    fn handle_urc(&mut self, kind: UrcKind, line: String) {
        match kind {
            UrcKind::Message | UrcKind::StatusReport => {
                self.two_line = Some((kind, urc::two_line_length(&line)));
            }
            _ => match urc::parse_line(kind, &line) {
                Some(u) => self.events.push_back(Event::Urc(u)),
                None => self.events.push_back(Event::Unsolicited(line)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_prefixes() {
        assert_eq!(
            Command::new("AT+CSQ").response_prefix().as_deref(),
            Some("+CSQ:")
        );
        assert_eq!(
            Command::new("AT+CREG?").response_prefix().as_deref(),
            Some("+CREG:")
        );
        assert_eq!(
            Command::new("at+cmgr=3").response_prefix().as_deref(),
            Some("+CMGR:")
        );
        assert_eq!(
            Command::new("AT^ICCID?").response_prefix().as_deref(),
            Some("^ICCID:")
        );
        assert_eq!(Command::new("ATE0").response_prefix(), None);
        assert_eq!(Command::new("AT").response_prefix(), None);
        assert_eq!(Command::new("").response_prefix(), None);
    }
}
