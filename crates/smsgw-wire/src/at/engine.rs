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
//!
//! A port just opened is out of step until proven otherwise: a USB modem delivers
//! at the next open what it wrote while nobody listened (a killed predecessor's
//! `+CMGS: 1` / `OK`). An engine made with [`Engine::opened`] therefore starts
//! unsynchronised: it escapes a pending prompt, drains the line until it is quiet,
//! writes a marker command that smsgw sends for nothing else (`AT+CSCS?`) and
//! discards everything until the marker's own answer, then lets the line settle.
//! A modem answers in order, so whatever the predecessor left comes before that
//! answer. What was drained is reported ([`Event::StaleReply`]): a `+CMGS` in it is
//! the predecessor's part on the wire. The same happens after a reply that cannot
//! belong to the command in flight (a desynchronisation: [`Outcome::Desync`],
//! counted) and, once [`Engine::watch_reboots`] is on, after a reboot announcement
//! (`RDY`, `SMS Ready`, an unasked `+CPIN: READY`...).

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
    /// A reply that cannot belong to this command arrived (a `+CMGS` for a command
    /// that is not a send, an `OK` before the prompt, another command's answer),
    /// or the modem announced a reboot: the line is out of step. Handled like a
    /// timeout: the engine resynchronises, and a send after its PDU is in doubt.
    Desync(Stage),
}

/// Why the engine is synchronising.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncCause {
    /// The port was just opened: whatever is pending is a previous process's.
    Open,
    /// A reply could not belong to the command in flight.
    Desync,
    /// The modem announced a reboot.
    Reboot,
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
    /// Lines read while synchronising (after an open, a desynchronisation or a
    /// reboot) that no command of this engine can claim. After [`SyncCause::Open`]
    /// a `+CMGS` among them is the previous process's part on the wire.
    StaleReply {
        cause: SyncCause,
        lines: Vec<String>,
    },
    /// A reply that could not belong to the command in flight (`id`), or that
    /// arrived with no command in flight.
    Desync { id: Option<CommandId>, line: String },
    /// The modem announced a reboot (`line`); with [`Engine::watch_reboots`] on.
    Rebooted { line: String },
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
    /// Time allowed for the answer to the resynchronisation marker.
    pub resync_timeout: Duration,
    /// Quiet time after the marker's answer in which further finals are taken as
    /// stale; also the quiet time that ends draining a port just opened.
    pub settle: Duration,
    /// The longest a port just opened is drained before the marker goes out,
    /// however much noise keeps arriving.
    pub drain_max: Duration,
    /// The synchronisation marker: a command smsgw sends only to synchronise, and
    /// the prefix of its information response. A modem that refuses it (answers
    /// an error twice and nothing else) is synchronised with a plain `AT`.
    pub marker: (&'static str, &'static str),
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            resync_timeout: Duration::from_secs(3),
            settle: Duration::from_millis(300),
            drain_max: Duration::from_secs(2),
            marker: ("AT+CSCS?", "+CSCS:"),
        }
    }
}

/// Lines that only ever answer a command (never unsolicited): seen while another
/// command is in flight, they prove the line out of step.
/// (Identity answers are left out: vendors answer them under other prefixes.)
const REPLY_ONLY: &[&str] = &[
    "+CMGS:", "+CSQ:", "+COPS:", "+CPMS:", "+CMGR:", "+CMGL:", "+CSCA:", "+CSCS:", "+CNMI:",
    "+CMGF:", "+CMEE:", "+CSMS:",
];

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

    /// Whether `line` is a reply this command cannot have: the line is out of step.
    fn cannot_answer(&self, line: &str, fin: Option<&Final>) -> bool {
        let past_pdu = matches!(self.step, Step::WritingPdu | Step::AwaitResult);
        if let Some(f) = fin {
            // A send answers OK only after its PDU; before it, only an error is possible.
            return self.cmd.pdu.is_some() && !past_pdu && f.is_ok();
        }
        if line.starts_with("+CMGS:") {
            return !(self.cmd.pdu.is_some() && past_pdu);
        }
        REPLY_ONLY
            .iter()
            .any(|p| line.starts_with(p) && self.prefix.as_deref() != Some(p))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The escape (ESC, CR) is handed out, not yet written.
    Escaping,
    /// Reading whatever is pending until the line has been quiet for `settle`
    /// (at the latest at `give_up_at`).
    Drain {
        quiet_at: Instant,
        give_up_at: Instant,
    },
    /// The marker is out (`writing`: not yet reported written); its answer is due
    /// by `deadline`.
    Marker {
        writing: bool,
        deadline: Option<Instant>,
        seen_prefix: bool,
        /// Error finals without the marker's prefix in this attempt.
        bare_errors: u32,
    },
    /// The marker answered: further finals are stale until `until`.
    Settle { until: Instant },
}

#[derive(Debug)]
struct Resync {
    /// After a timeout: the command whose timeout caused this; else why.
    after: Result<CommandId, SyncCause>,
    phase: Phase,
    late_lines: Vec<String>,
    attempts: u32,
    /// Lead the marker with ESC (the timed-out command was a send).
    escape: bool,
    /// Synchronise with a plain `AT` (after a timeout, or when the modem refuses
    /// the marker).
    plain: bool,
    /// Attempts whose only answer was an error final: the marker is refused.
    refused: u32,
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
    /// Replies that could not belong to their command, since the engine started.
    desyncs: u64,
    /// Reboot announcements end the modem's session (off while initialising,
    /// when boot lines are expected).
    watch_reboots: bool,
    /// A modem just powered up: until then its late readiness lines (`SMS
    /// Ready`, `+QIND: SMS DONE`...) are expected; only a first boot line (`RDY`,
    /// `^SYSSTART`) means it started again.
    boot_grace_until: Option<Instant>,
    /// A `+CMT`/`+CDS` header was seen; its PDU line comes next.
    two_line: Option<(UrcKind, Option<usize>)>,
    frames: Vec<Frame>,
    /// The marker was refused once: later synchronisations use `AT` at once.
    marker_refused: bool,
}

impl Engine {
    /// An engine for a line known to be in step (transcripts, tests).
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
            desyncs: 0,
            watch_reboots: false,
            boot_grace_until: None,
            two_line: None,
            frames: Vec::new(),
            marker_refused: false,
        }
    }

    /// An engine for a port just opened: unsynchronised until the marker answers
    /// (see the module doc). Commands submitted meanwhile wait.
    pub fn opened(registry: Registry, config: EngineConfig) -> Engine {
        let mut e = Engine::new(registry, config);
        e.start_sync(SyncCause::Open);
        e
    }

    /// Replaces the URC registry (once the vendor is known), keeping the state.
    pub fn set_registry(&mut self, registry: Registry) {
        self.registry = registry;
    }

    /// Whether a reboot announcement resynchronises the line and is reported
    /// ([`Event::Rebooted`]). Off while initialising (boot lines are expected then).
    pub fn watch_reboots(&mut self, on: bool) {
        self.watch_reboots = on;
    }

    /// The modem has just booted: its late readiness lines are expected until
    /// `until`; a first boot line still counts as a restart.
    pub fn expect_boot_lines(&mut self, until: Instant) {
        self.boot_grace_until = Some(until);
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

    /// Replies that could not belong to their command, since the engine started.
    pub fn desyncs(&self) -> u64 {
        self.desyncs
    }

    /// Nothing in flight, nothing queued, not resynchronising.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle) && self.queue.is_empty()
    }

    /// Whether the engine is synchronising the line (commands wait).
    pub fn is_synchronising(&self) -> bool {
        matches!(self.state, State::Resync(_))
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
            State::Resync(r) => match r.phase {
                Phase::Escaping => None,
                Phase::Drain {
                    quiet_at,
                    give_up_at,
                } => Some(quiet_at.min(give_up_at)),
                Phase::Marker { deadline, .. } => deadline,
                Phase::Settle { until } => Some(until),
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
            State::Resync(r) => match &mut r.phase {
                Phase::Escaping => {
                    r.phase = Phase::Drain {
                        quiet_at: now + self.config.settle,
                        give_up_at: now + self.config.drain_max,
                    }
                }
                Phase::Marker {
                    writing, deadline, ..
                } if *writing => {
                    *writing = false;
                    *deadline = Some(now + self.config.resync_timeout);
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// Bytes read from the port.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if let State::Resync(r) = &mut self.state {
            // Anything at all keeps a draining line from counting as quiet.
            if let Phase::Drain {
                quiet_at,
                give_up_at,
            } = &mut r.phase
            {
                *quiet_at = (now + self.config.settle).min(*give_up_at);
            }
        }
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
                self.start_resync(id, had_pdu);
            }
            State::Resync(r) => match r.phase {
                Phase::Drain {
                    quiet_at,
                    give_up_at,
                } if quiet_at <= now || give_up_at <= now => {
                    self.write_marker();
                }
                Phase::Marker {
                    writing: false,
                    deadline: Some(d),
                    bare_errors,
                    seen_prefix,
                } if d <= now => {
                    self.consecutive_timeouts += 1;
                    r.attempts += 1;
                    if !r.plain && !seen_prefix && bare_errors > 0 {
                        r.refused += 1;
                        if r.refused >= 2 {
                            // The modem refuses the marker: in-order answers and
                            // the settle window still hold with a plain AT.
                            r.plain = true;
                            self.marker_refused = true;
                        }
                    }
                    let attempts = r.attempts;
                    self.events.push_back(Event::ResyncTimeout { attempts });
                    self.write_marker();
                }
                Phase::Settle { until } if until <= now => {
                    let (after, lines) = (r.after, std::mem::take(&mut r.late_lines));
                    if !lines.is_empty() {
                        self.events.push_back(match after {
                            Ok(id) => Event::LateReply { id, lines },
                            Err(cause) => Event::StaleReply { cause, lines },
                        });
                    }
                    self.events.push_back(Event::Resynced);
                    self.state = State::Idle;
                    self.advance();
                }
                _ => {}
            },
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

    /// After a timeout: `AT` (led by ESC for a send), its OK, then the settle
    /// window. The answer the timed-out command was waiting for comes first, if
    /// at all: a modem answers in order.
    fn start_resync(&mut self, after: CommandId, escape: bool) {
        self.state = State::Resync(Resync {
            after: Ok(after),
            phase: Phase::Escaping,
            late_lines: Vec::new(),
            attempts: 0,
            escape,
            plain: true,
            refused: 0,
        });
        self.write_marker();
    }

    /// At open, after a desynchronisation or a reboot: escape a pending prompt,
    /// drain until quiet, then the marker.
    fn start_sync(&mut self, cause: SyncCause) {
        // ESC aborts a modem left waiting for PDU input (a killed predecessor's
        // send); the CR after it ends whatever it makes of a stray ESC.
        self.transmit.push_back(vec![ESC, b'\r']);
        self.state = State::Resync(Resync {
            after: Err(cause),
            phase: Phase::Escaping,
            late_lines: Vec::new(),
            attempts: 0,
            escape: false,
            plain: self.marker_refused,
            refused: 0,
        });
    }

    fn write_marker(&mut self) {
        let State::Resync(r) = &mut self.state else {
            return;
        };
        let mut bytes = Vec::new();
        if r.escape {
            bytes.extend([ESC, b'\r']);
        }
        let line = if r.plain { "AT" } else { self.config.marker.0 };
        bytes.extend(line.as_bytes());
        bytes.push(b'\r');
        self.transmit.push_back(bytes);
        r.phase = Phase::Marker {
            writing: true,
            deadline: None,
            seen_prefix: false,
            bare_errors: 0,
        };
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

    /// The line is out of step: fail the command in flight (if any) and
    /// synchronise. `line` itself is kept with what the synchronisation drains.
    fn desync(&mut self, line: String, cause: SyncCause) {
        let id = match std::mem::replace(&mut self.state, State::Idle) {
            State::Busy(f) => {
                self.events.push_back(Event::Done {
                    id: f.id,
                    outcome: Outcome::Desync(f.stage()),
                });
                Some(f.id)
            }
            _ => None,
        };
        self.consecutive_timeouts += 1;
        if cause == SyncCause::Reboot {
            self.events
                .push_back(Event::Rebooted { line: line.clone() });
        } else {
            self.desyncs += 1;
            self.events.push_back(Event::Desync {
                id,
                line: line.clone(),
            });
        }
        self.start_sync(cause);
        if let State::Resync(r) = &mut self.state {
            r.late_lines.push(line);
        }
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
        if let State::Resync(r) = &mut self.state {
            // A predecessor's prompt: the escape already sent (or the next one) aborts it.
            if matches!(r.phase, Phase::Drain { .. } | Phase::Escaping) {
                return;
            }
        }
        self.events
            .push_back(Event::Unsolicited("> (unexpected prompt)".into()));
    }

    /// A reboot announcement, when watched: a boot marker, or a `+CPIN: READY`
    /// nobody asked for.
    fn is_reboot(&self, now: Instant, line: &str, kind: Option<UrcKind>) -> bool {
        if !self.watch_reboots {
            return false;
        }
        if self.boot_grace_until.is_some_and(|t| now < t)
            && !(line == "RDY" || line.starts_with("^SYSSTART"))
        {
            return false;
        }
        let asked_cpin =
            matches!(&self.state, State::Busy(f) if f.prefix.as_deref() == Some("+CPIN:"));
        kind == Some(UrcKind::Ready)
            || (!asked_cpin
                && line
                    .strip_prefix("+CPIN:")
                    .is_some_and(|s| s.trim().eq_ignore_ascii_case("READY")))
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
        let kind = self.registry.classify(&line);
        let reboot = self.is_reboot(now, &line, kind);
        match &mut self.state {
            State::Busy(f) => {
                if f.is_echo(&line) {
                    return;
                }
                let fin = classify(&line, f.cmd.numeric_finals);
                if f.cannot_answer(&line, fin.as_ref()) {
                    return self.desync(line, SyncCause::Desync);
                }
                if let Some(fin) = fin {
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
                if reboot {
                    return self.desync(line, SyncCause::Reboot);
                }
                if let Some(kind) = kind {
                    self.handle_urc(kind, line);
                    return;
                }
                // Information text without a prefix (IMEI, model, a +CMGR PDU line).
                f.lines.push(line);
            }
            State::Resync(r) => {
                let marker = self.config.marker;
                match &mut r.phase {
                    Phase::Marker {
                        seen_prefix,
                        bare_errors,
                        ..
                    } => {
                        if !r.plain && line.starts_with(marker.1) {
                            *seen_prefix = true;
                            return;
                        }
                        // Numeric finals too at open: the modem may be in ATV0.
                        if let Some(fin) = classify(&line, r.after.is_err()) {
                            let ours = if r.plain { fin.is_ok() } else { *seen_prefix };
                            if ours {
                                // The first answer: ours, or a late one with ours right behind it.
                                r.phase = Phase::Settle {
                                    until: now + self.config.settle,
                                };
                                self.consecutive_timeouts = 0;
                            } else if !fin.is_ok() {
                                *bare_errors += 1;
                            }
                            return;
                        }
                        if line.eq_ignore_ascii_case(marker.0) {
                            return; // the echo of our marker
                        }
                    }
                    _ => {
                        if classify(&line, r.after.is_err()).is_some() {
                            return; // a stale final
                        }
                    }
                }
                if let Some(kind) = kind {
                    self.handle_urc(kind, line);
                    return;
                }
                if !line.eq_ignore_ascii_case("AT") {
                    r.late_lines.push(line);
                }
            }
            State::Idle => {
                if line.starts_with("+CMGS:") || classify(&line, false).is_some() {
                    // An answer with no command in flight: what comes next may be
                    // taken for the next command's answer.
                    return self.desync(line, SyncCause::Desync);
                }
                if reboot {
                    return self.desync(line, SyncCause::Reboot);
                }
                if let Some(kind) = kind {
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
