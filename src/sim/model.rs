//! The simulated modem itself, as a pure state machine: bytes in at `now`,
//! bytes out when due. The pty runner ([`super::pty`]) only moves bytes.
//!
//! It answers the commands smsgw uses like a real modem would, including the
//! awkward parts: echo, prompt variants, a SIM that is busy after power-up,
//! status reports that may arrive before the send's `OK`, message references that
//! wrap at 255, memory that fills up. Faults are injected by configuration
//! ([`Faults`]) or at run time (hang, deregistration, garbage, incoming messages).

use super::profile::Profile;
use crate::pdu::{self, build, Layout, Tpdu};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What happens to a part after the SMSC accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportOutcome {
    /// TP-Status 0x00 after the report delay.
    Delivered,
    /// 0x30 (still trying) after the delay, then 0x00 after twice the delay.
    StillTryingThenDelivered,
    /// 0x46 (validity period expired): a final failure.
    Failed,
    /// No report ever arrives.
    Never,
}

/// Faults chosen up front.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Faults {
    /// Probability (0..=1) that a part is refused with `+CMS ERROR: <cms_error_code>`.
    pub cms_error_rate: f64,
    pub cms_error_code: u16,
    /// Recipients whose parts are always refused with the given code.
    pub fail_recipients: Vec<(String, u16)>,
    /// Probability that the modem sends a part to the network but never answers
    /// the `AT+CMGS` (the ambiguous case).
    pub hang_after_ctrl_z_rate: f64,
    /// Not registered: sends fail with `+CMS ERROR: 331`.
    pub deregistered: bool,
    /// The SIM's message memory is full: incoming messages wait at the SMSC.
    pub sim_full: bool,
    /// Refuse `AT+CNMI` with `<ds>=1` (routed `+CDS`), as Qualcomm firmware does
    /// although `AT+CNMI=?` lists it: reports then come stored, with `+CDSI`.
    pub refuse_routed_reports: bool,
    /// While the report memory is full, refuse sends that request a report with
    /// `+CMS ERROR: 322` (memory full) until stored reports are deleted.
    pub refuse_sends_when_report_memory_full: bool,
    /// `AT+CPIN=` is echoed and answered only after this (a SIM slow to check
    /// its PIN): the echo with the PIN comes after the command's timeout, as a
    /// late reply.
    pub slow_pin: Option<Duration>,
}

/// Configuration of one simulated modem.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The modem's name in the record of submitted parts.
    pub id: String,
    pub profile: Profile,
    /// Network time of one `AT+CMGS`, uniform in this range.
    pub latency: (Duration, Duration),
    pub report_delay: Duration,
    pub report_outcome: ReportOutcome,
    pub faults: Faults,
    /// The SMSC the SIM holds (`AT+CSCA?`); empty: sends without an SMSC fail with 330.
    pub smsc: String,
    pub pin: Option<String>,
    pub imei: String,
    pub imsi: String,
    pub iccid: String,
    pub operator: String,
    pub rssi: u8,
    /// First message reference (to test the 255 -> 0 wrap).
    pub first_mr: u8,
    pub memory_slots: usize,
    /// Slots of the status report memory (`SR`).
    pub report_slots: usize,
    /// Overrides the profile's noise period.
    pub noise_every: Option<Duration>,
    pub seed: u64,
}

impl SimConfig {
    pub fn new(id: impl Into<String>, profile: Profile) -> SimConfig {
        SimConfig {
            id: id.into(),
            noise_every: profile.noise_every,
            profile,
            latency: (Duration::ZERO, Duration::ZERO),
            report_delay: Duration::from_millis(200),
            report_outcome: ReportOutcome::Delivered,
            faults: Faults::default(),
            smsc: "+8613800100500".into(),
            pin: None,
            imei: "867584030000001".into(),
            imsi: "460001234567890".into(),
            iccid: "89860012345678901234".into(),
            operator: "CHINA MOBILE".into(),
            rssi: 20,
            first_mr: 0,
            memory_slots: 30,
            report_slots: 30,
            seed: 1,
        }
    }
}

/// A part as the network received it: the record tests and benchmarks count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Submitted {
    pub time: DateTime<Utc>,
    pub modem: String,
    pub mr: u8,
    pub to: String,
    pub text: String,
    /// 1-based part number and total (1/1 for a single message).
    pub part: u8,
    pub total: u8,
    /// Concatenation reference, when multipart.
    pub reference: Option<u16>,
    /// The modem answered the send (false when it hung after Ctrl-Z).
    pub answered: bool,
    /// The simulated network time of this part, in microseconds.
    pub latency_us: u64,
}

#[derive(Debug, Clone)]
struct Stored {
    /// 0 unread, 1 read.
    stat: u8,
    pdu: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Due {
    Bytes(Vec<u8>),
    Report {
        pdu: Vec<u8>,
    },
    Incoming {
        pdu: Vec<u8>,
    },
    Noise,
    /// The next RING (+CLIP) of the call ringing now.
    Ring,
}

#[derive(Debug)]
enum Mode {
    Command,
    Pdu { len: usize, hex: Vec<u8> },
}

/// The simulated modem.
#[derive(Debug)]
pub struct SimModem {
    cfg: SimConfig,
    base: (Instant, DateTime<Utc>),
    booted_at: Instant,
    rng: u64,
    input: Vec<u8>,
    mode: Mode,
    echo: bool,
    /// The caller of the call ringing now.
    ringing: Option<String>,
    rings: u32,
    max_rings: u32,
    hung_up_calls_seen: bool,
    cmee: u8,
    pin_ok: bool,
    hung: bool,
    registered: bool,
    smsc: String,
    /// CNMI `<mt>` and `<ds>`.
    mt: u8,
    ds: u8,
    mr: u8,
    /// The memory `+CMGR`/`+CMGL`/`+CMGD` act on.
    read_mem: String,
    sm: Vec<Option<Stored>>,
    sr: Vec<Option<Stored>>,
    /// Incoming messages the SMSC holds while the memory is full.
    waiting: VecDeque<Vec<u8>>,
    /// Scheduled output, kept sorted by time.
    due: Vec<(Instant, Due)>,
    /// When the modem finishes what it is doing (responses come in order).
    free_at: Instant,
    submitted: Vec<Submitted>,
    noise_index: usize,
    concat_ref: u8,
    /// The empty view a broken report storage gives of SR.
    unreadable: Vec<Option<Stored>>,
}

impl SimModem {
    /// Powers the modem up at `now`: boot lines and the SIM-busy window start.
    pub fn new(cfg: SimConfig, now: Instant) -> SimModem {
        let wall = Utc::now();
        let mut m = SimModem {
            echo: cfg.profile.echo,
            ringing: None,
            max_rings: 10,
            rings: 0,
            hung_up_calls_seen: false,
            cmee: 0,
            pin_ok: cfg.pin.is_none(),
            hung: false,
            registered: !cfg.faults.deregistered,
            smsc: cfg.smsc.clone(),
            mt: 0,
            ds: 0,
            mr: cfg.first_mr,
            read_mem: "SM".into(),
            sm: vec![None; cfg.memory_slots],
            sr: vec![None; cfg.report_slots],
            waiting: VecDeque::new(),
            due: Vec::new(),
            free_at: now,
            submitted: Vec::new(),
            noise_index: 0,
            concat_ref: 0,
            unreadable: Vec::new(),
            rng: cfg.seed.max(1),
            input: Vec::new(),
            mode: Mode::Command,
            base: (now, wall),
            booted_at: now,
            cfg,
        };
        for line in m.cfg.profile.boot_lines {
            let bytes = m.urc(line);
            m.schedule(now, Due::Bytes(bytes));
        }
        if let Some(every) = m
            .cfg
            .noise_every
            .filter(|_| !m.cfg.profile.noise.is_empty())
        {
            m.schedule(now + every, Due::Noise);
        }
        m
    }

    /// Bytes from the daemon.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if self.hung {
            return;
        }
        for &b in bytes {
            match &mut self.mode {
                Mode::Pdu { hex, len } => match b {
                    0x1A => {
                        let (hex, len) = (std::mem::take(hex), *len);
                        self.mode = Mode::Command;
                        self.finish_send(now, &hex, len);
                    }
                    0x1B => {
                        self.mode = Mode::Command;
                        self.respond(now, Duration::ZERO, "\r\nOK\r\n".into());
                    }
                    b'\r' | b'\n' => {}
                    _ => {
                        hex.push(b);
                        if hex.len() > 2048 {
                            self.mode = Mode::Command;
                            self.respond(now, Duration::ZERO, self.cms(304));
                        }
                    }
                },
                Mode::Command => match b {
                    b'\r' => {
                        let line = String::from_utf8_lossy(&std::mem::take(&mut self.input))
                            .trim()
                            .to_string();
                        let slow_pin = self
                            .cfg
                            .faults
                            .slow_pin
                            .filter(|_| line.to_ascii_uppercase().starts_with("AT+CPIN="));
                        if let Some(after) = slow_pin {
                            let echo = if self.echo {
                                format!("{line}\r")
                            } else {
                                String::new()
                            };
                            let answer = self.answer_pin(&line);
                            self.respond(now, after, format!("{echo}{answer}"));
                            continue;
                        }
                        if self.echo {
                            self.respond(now, Duration::ZERO, format!("{line}\r"));
                        }
                        if !line.is_empty() {
                            self.command(now, &line);
                        }
                    }
                    b'\n' | 0x1B | 0x1A => {}
                    _ => {
                        self.input.push(b);
                        if self.input.len() > 1024 {
                            self.input.clear();
                        }
                    }
                },
            }
        }
    }

    /// The next output that is due at `now`, if any.
    pub fn poll_output(&mut self, now: Instant) -> Option<Vec<u8>> {
        loop {
            if self.due.first().is_none_or(|(t, _)| *t > now) {
                return None;
            }
            let (at, due) = self.due.remove(0);
            if self.hung {
                continue;
            }
            match due {
                Due::Bytes(b) => return Some(b),
                Due::Noise => {
                    let noise = self.cfg.profile.noise;
                    let line = noise[self.noise_index % noise.len()];
                    self.noise_index += 1;
                    if let Some(every) = self.cfg.noise_every {
                        self.schedule(at + every, Due::Noise);
                    }
                    return Some(self.urc(line));
                }
                Due::Ring => {
                    let Some(caller) = self.ringing.clone() else {
                        continue;
                    };
                    self.rings += 1;
                    if self.rings > self.max_rings {
                        // Nobody answered: the network gives up.
                        self.ringing = None;
                        return Some(self.urc("NO CARRIER"));
                    }
                    self.schedule(at + Duration::from_secs(3), Due::Ring);
                    let mut out = self.urc("RING");
                    if caller != "-" {
                        out.extend(self.urc(&format!("+CLIP: \"{caller}\",145,\"\",,\"\",0")));
                    }
                    return Some(out);
                }
                Due::Report { pdu } => {
                    if let Some(b) = self.deliver_report(pdu) {
                        return Some(b);
                    }
                }
                Due::Incoming { pdu } => {
                    if let Some(b) = self.deliver_incoming(pdu) {
                        return Some(b);
                    }
                }
            }
        }
    }

    /// When output is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.due.first().map(|(t, _)| *t)
    }

    /// Messages and reports the modem holds now: (SM used, SR used).
    pub fn stored(&self) -> (usize, usize) {
        let used = |m: &Vec<Option<Stored>>| m.iter().filter(|s| s.is_some()).count();
        (used(&self.sm), used(&self.sr))
    }

    /// Parts the network received since the last call.
    pub fn drain_submitted(&mut self) -> Vec<Submitted> {
        std::mem::take(&mut self.submitted)
    }

    /// Stop answering anything (firmware hang) until [`SimModem::power_cycle`].
    pub fn set_hung(&mut self, hung: bool) {
        self.hung = hung;
    }

    pub fn set_registered(&mut self, now: Instant, registered: bool) {
        self.registered = registered;
        let line = format!("+CREG: {}", if registered { 1 } else { 2 });
        let b = self.urc(&line);
        self.schedule(now, Due::Bytes(b));
    }

    /// Bytes a wrong baud rate or a noisy line would produce.
    pub fn inject_garbage(&mut self, now: Instant, n: usize) {
        let bytes: Vec<u8> = (0..n)
            .map(|_| (self.next_random() >> 24) as u8 | 0x80)
            .collect();
        self.schedule(now, Due::Bytes(bytes));
    }

    /// An SMS from `from` arrives from the network (split and concatenated as an
    /// SMSC would).
    /// A voice call from `caller` rings the modem (RING and +CLIP every 3 s;
    /// `-`: a modem that gives no +CLIP) until it is hung up (`ATH`,
    /// `AT+CHUP`) or `rings` rings pass (ten when not given), then the
    /// network ends it (`NO CARRIER`).
    pub fn ring(&mut self, now: Instant, caller: &str, rings: Option<u32>) {
        self.ringing = Some(caller.to_string());
        self.rings = 0;
        self.max_rings = rings.unwrap_or(10);
        self.hung_up_calls_seen = false;
        self.schedule(now, Due::Ring);
    }

    /// Whether the last call was hung up by the daemon.
    pub fn call_hung_up(&self) -> bool {
        self.hung_up_calls_seen
    }

    pub fn inject_incoming(
        &mut self,
        now: Instant,
        from: &str,
        text: &str,
    ) -> Result<usize, pdu::EncodeError> {
        self.inject_incoming_losing(now, from, text, &[])
    }

    /// Like [`SimModem::inject_incoming`], but the network loses the parts numbered
    /// in `lost` (1-based): the modem never sees them. Returns the parts announced.
    pub fn inject_incoming_losing(
        &mut self,
        now: Instant,
        from: &str,
        text: &str,
        lost: &[usize],
    ) -> Result<usize, pdu::EncodeError> {
        self.concat_ref = self.concat_ref.wrapping_add(1);
        let scts = build::timestamp_at(self.wall(now), 32);
        let parts = build::deliver(
            Some(&self.cfg.smsc.clone()),
            from,
            text,
            &scts,
            self.concat_ref,
        )?;
        let n = parts.len();
        for (i, pdu) in parts.into_iter().enumerate() {
            if lost.contains(&(i + 1)) {
                continue;
            }
            self.schedule(
                now + Duration::from_millis(10 * i as u64),
                Due::Incoming { pdu },
            );
        }
        Ok(n)
    }

    /// Power-cycle: the state a modem has after its power returns.
    pub fn power_cycle(&mut self, now: Instant) {
        let cfg = self.cfg.clone();
        let sm = std::mem::take(&mut self.sm);
        let sr = std::mem::take(&mut self.sr);
        let mr = self.mr;
        let submitted = std::mem::take(&mut self.submitted);
        *self = SimModem::new(cfg, now);
        // Messages on the SIM and the reference counter survive.
        self.sm = sm;
        self.sr = sr;
        self.mr = mr;
        self.submitted = submitted;
    }

    fn wall(&self, now: Instant) -> DateTime<Utc> {
        self.base.1
            + chrono::Duration::from_std(now.saturating_duration_since(self.base.0))
                .unwrap_or_default()
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic per seed, no dependency.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next_random() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn schedule(&mut self, at: Instant, due: Due) {
        let i = self.due.partition_point(|(t, _)| *t <= at);
        self.due.insert(i, (at, due));
    }

    /// Schedules a response after what the modem is already doing.
    fn respond(&mut self, now: Instant, work: Duration, text: String) {
        let at = self.free_at.max(now) + work;
        self.free_at = at;
        self.schedule(at, Due::Bytes(text.into_bytes()));
    }

    fn urc(&self, line: &str) -> Vec<u8> {
        format!("\r\n{line}{}", self.cfg.profile.urc_end).into_bytes()
    }

    fn ok(&self) -> String {
        "\r\nOK\r\n".into()
    }

    fn cms(&self, code: u16) -> String {
        match self.cmee {
            0 => "\r\nERROR\r\n".into(),
            _ => format!("\r\n+CMS ERROR: {code}\r\n"),
        }
    }

    fn cme(&self, code: u16) -> String {
        match (self.cmee, code) {
            (0, _) => "\r\nERROR\r\n".into(),
            (2, 14) => "\r\n+CME ERROR: SIM busy\r\n".into(),
            (2, 11) => "\r\n+CME ERROR: SIM PIN required\r\n".into(),
            _ => format!("\r\n+CME ERROR: {code}\r\n"),
        }
    }

    /// The error a SIM command gets now, if any (busy after boot, PIN missing).
    fn sim_error(&self, now: Instant) -> Option<String> {
        if now < self.booted_at + self.cfg.profile.sim_busy {
            return Some(self.cme(self.cfg.profile.busy_code));
        }
        (!self.pin_ok).then(|| self.cme(11))
    }

    /// The answer to `AT+CPIN=<given>`.
    fn check_pin(&mut self, given: &str) -> String {
        if self.cfg.pin.as_deref() == Some(given) {
            self.pin_ok = true;
            self.ok()
        } else {
            self.cme(16)
        }
    }

    /// The answer to a whole `AT+CPIN=...` line (the slow-PIN fault).
    fn answer_pin(&mut self, line: &str) -> String {
        let given = line
            .get(8..)
            .unwrap_or("")
            .trim()
            .trim_matches('"')
            .to_string();
        self.check_pin(&given)
    }

    fn command(&mut self, now: Instant, line: &str) {
        let upper = line.to_ascii_uppercase();
        let Some(cmd) = upper.strip_prefix("AT") else {
            let r = format!("\r\n{}\r\n", self.cfg.profile.unsupported);
            return self.respond(now, Duration::ZERO, r);
        };
        let arg = |prefix: &str| {
            line.get(2 + prefix.len()..)
                .map(|s| s.trim().trim_matches('"').to_string())
        };
        let p = self.cfg.profile.clone();
        let reply: String = match cmd {
            "" | "&F" | "+CMMS=2" | "+CMMS=1" | "+CMMS=0" | "V1" | "+CLIP=1" | "+CRC=1" => {
                self.ok()
            }
            "H" | "+CHUP" => {
                if self.ringing.take().is_some() {
                    self.hung_up_calls_seen = true;
                }
                self.ok()
            }
            "Z" => {
                self.echo = p.echo;
                self.ok()
            }
            "E0" | "E0V1" | "E0+CMEE=1" => {
                self.echo = false;
                self.ok()
            }
            "E1" => {
                self.echo = true;
                self.ok()
            }
            c if c.starts_with("+CMEE=") => {
                self.cmee = c[6..].parse().unwrap_or(0).min(2);
                self.ok()
            }
            "+CMGF=0" => self.ok(),
            "+CSCS?" => "\r\n+CSCS: \"IRA\"\r\n\r\nOK\r\n".into(),
            c if c.starts_with("+CSCS=") => self.ok(),
            "+CMGF=1" => "\r\nOK\r\n".into(),
            "+CGMI" => format!("\r\n{}\r\n\r\nOK\r\n", p.manufacturer),
            "+CGMM" => format!("\r\n{}\r\n\r\nOK\r\n", p.model),
            "+CGMR" => format!("\r\n{}\r\n\r\nOK\r\n", p.revision),
            "+CGSN" => format!("\r\n{}\r\n\r\nOK\r\n", self.cfg.imei),
            "+CIMI" | "+CCID" | "+ICCID" | "^ICCID?" => match self.sim_error(now) {
                Some(e) => e,
                None => match cmd {
                    "+CIMI" => format!("\r\n{}\r\n\r\nOK\r\n", self.cfg.imsi),
                    _ => format!("\r\n+CCID: {}\r\n\r\nOK\r\n", self.cfg.iccid),
                },
            },
            "+CPIN?" => {
                if now < self.booted_at + p.sim_busy {
                    self.cme(p.busy_code)
                } else {
                    let state = if self.pin_ok { "READY" } else { "SIM PIN" };
                    if p.cpin_no_ok {
                        format!("\r\n+CPIN: {state}\r\n")
                    } else {
                        format!("\r\n+CPIN: {state}\r\n\r\nOK\r\n")
                    }
                }
            }
            c if c.starts_with("+CPIN=") => {
                let given = arg("+CPIN=").unwrap_or_default();
                self.check_pin(&given)
            }
            "+CSQ" => format!(
                "\r\n+CSQ: {},99\r\n\r\nOK\r\n",
                if self.registered { self.cfg.rssi } else { 99 }
            ),
            "+CREG?" => format!(
                "\r\n+CREG: 0,{}\r\n\r\nOK\r\n",
                if self.registered { 1 } else { 2 }
            ),
            c if c.starts_with("+CREG=") => self.ok(),
            "+COPS?" => {
                if self.registered {
                    format!("\r\n+COPS: 0,0,\"{}\",7\r\n\r\nOK\r\n", self.cfg.operator)
                } else {
                    "\r\n+COPS: 0\r\n\r\nOK\r\n".into()
                }
            }
            "+CSCA?" => match self.sim_error(now) {
                Some(e) => e,
                None => format!("\r\n+CSCA: \"{}\",145\r\n\r\nOK\r\n", self.smsc),
            },
            c if c.starts_with("+CSCA=") => {
                self.smsc = arg("+CSCA=")
                    .unwrap_or_default()
                    .split(',')
                    .next()
                    .unwrap_or("")
                    .trim_matches('"')
                    .into();
                self.ok()
            }
            "+CNMI=?" => "\r\n+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)\r\n\r\nOK\r\n".into(),
            c if c.starts_with("+CNMI=") => {
                let f: Vec<u8> = c[6..]
                    .split(',')
                    .map(|x| x.trim().parse().unwrap_or(0))
                    .collect();
                let ds = f.get(3).copied().unwrap_or(0);
                if ds == 1 && self.cfg.faults.refuse_routed_reports {
                    self.cms(303)
                } else {
                    self.mt = f.get(1).copied().unwrap_or(0);
                    self.ds = ds;
                    self.ok()
                }
            }
            c if c.starts_with("+CPMS=") => match self.sim_error(now) {
                Some(e) => e,
                None => {
                    let mem = arg("+CPMS=").unwrap_or_default();
                    let first = mem
                        .split(',')
                        .next()
                        .unwrap_or("SM")
                        .trim_matches('"')
                        .to_string();
                    if first == "SM" || first == "SR" || first == "ME" {
                        self.read_mem = if first == "SR" {
                            "SR".into()
                        } else {
                            "SM".into()
                        };
                        let (u, t) = self.usage();
                        format!("\r\n+CPMS: {u},{t},{u},{t},{u},{t}\r\n\r\nOK\r\n")
                    } else {
                        self.cms(302)
                    }
                }
            },
            "+CPMS?" => {
                let (u, t) = self.usage();
                let m = self.read_mem.clone();
                format!("\r\n+CPMS: \"{m}\",{u},{t},\"{m}\",{u},{t},\"{m}\",{u},{t}\r\n\r\nOK\r\n")
            }
            c if c.starts_with("+CMGL") => match self.sim_error(now) {
                Some(e) => e,
                None => {
                    let mut s = String::new();
                    let mem = self.mem_mut();
                    for (i, slot) in mem.iter_mut().enumerate() {
                        if let Some(st) = slot {
                            s += &format!(
                                "\r\n+CMGL: {i},{},,{}\r\n{}",
                                st.stat,
                                tpdu_len(&st.pdu),
                                pdu::to_hex(&st.pdu)
                            );
                            st.stat = 1;
                        }
                    }
                    s + "\r\n\r\nOK\r\n"
                }
            },
            c if c.starts_with("+CMGR=") => match self.sim_error(now) {
                Some(e) => e,
                None => {
                    let idx: usize = c[6..].trim().parse().unwrap_or(usize::MAX);
                    let mem = self.mem_mut();
                    match mem.get_mut(idx) {
                        None => self.cms(321),
                        Some(None) => self.ok(),
                        Some(Some(st)) => {
                            let r = format!(
                                "\r\n+CMGR: {},,{}\r\n{}\r\n\r\nOK\r\n",
                                st.stat,
                                tpdu_len(&st.pdu),
                                pdu::to_hex(&st.pdu)
                            );
                            st.stat = 1;
                            r
                        }
                    }
                }
            },
            c if c.starts_with("+CMGD=") => {
                let idx: usize = c[6..]
                    .split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .parse()
                    .unwrap_or(usize::MAX);
                let mem = self.mem_mut();
                match mem.get_mut(idx) {
                    None => self.cms(321),
                    Some(slot) => {
                        *slot = None;
                        self.release_waiting(now);
                        self.ok()
                    }
                }
            }
            c if c.starts_with("+CMGS=") => {
                if let Some(e) = self.sim_error(now) {
                    e
                } else {
                    match c[6..].trim().parse::<usize>() {
                        Ok(len) if (7..=164).contains(&len) => {
                            self.mode = Mode::Pdu {
                                len,
                                hex: Vec::new(),
                            };
                            p.prompt.to_string()
                        }
                        _ => self.cms(304),
                    }
                }
            }
            "+CFUN=1,1" | "+CFUN=1,1;" => {
                self.respond(now, Duration::ZERO, self.ok());
                let at = self.free_at + Duration::from_millis(50);
                self.free_at = at;
                // Power-cycle in place: the boot lines follow.
                self.power_cycle(at);
                return;
            }
            "+CFUN=1" | "+CFUN?" => {
                if cmd == "+CFUN?" {
                    "\r\n+CFUN: 1\r\n\r\nOK\r\n".into()
                } else {
                    self.ok()
                }
            }
            "+CSMS?" => "\r\n+CSMS: 0,1,1,1\r\n\r\nOK\r\n".into(),
            "I" => format!(
                "\r\n{}\r\n{}\r\nRevision: {}\r\n\r\nOK\r\n",
                p.manufacturer, p.model, p.revision
            ),
            _ => format!("\r\n{}\r\n", p.unsupported),
        };
        self.respond(now, Duration::ZERO, reply);
    }

    fn mem_mut(&mut self) -> &mut Vec<Option<Stored>> {
        if self.read_mem == "SR" && self.cfg.profile.report_storage_broken {
            // What the firmware gives back for SR: nothing (the reports stay there).
            &mut self.unreadable
        } else if self.read_mem == "SR" {
            &mut self.sr
        } else {
            &mut self.sm
        }
    }

    fn report_memory_full(&self) -> bool {
        let mem = if self.cfg.profile.report_mem == "SR" {
            &self.sr
        } else {
            &self.sm
        };
        mem.iter().all(Option::is_some)
    }

    fn usage(&self) -> (usize, usize) {
        let mem = if self.read_mem == "SR" {
            &self.sr
        } else {
            &self.sm
        };
        (mem.iter().filter(|s| s.is_some()).count(), mem.len())
    }

    fn finish_send(&mut self, now: Instant, hex: &[u8], len: usize) {
        if self.cfg.profile.echo_pdu_chunks && self.echo {
            let echo: Vec<u8> = hex
                .chunks(32)
                .flat_map(|c| c.iter().copied().chain(*b"\r\n"))
                .collect();
            self.respond(
                now,
                Duration::ZERO,
                String::from_utf8_lossy(&echo).into_owned(),
            );
        }
        let bytes = match pdu::from_hex(&String::from_utf8_lossy(hex)) {
            Ok(b) if !b.is_empty() && b.len() == len + 1 + b[0] as usize => b,
            _ => return self.respond(now, Duration::ZERO, self.cms(304)),
        };
        let decoded = match pdu::decode(&bytes, Layout::WithSmsc) {
            Ok(d) => d,
            Err(_) => return self.respond(now, Duration::ZERO, self.cms(304)),
        };
        let Tpdu::Submit(submit) = &decoded.tpdu else {
            return self.respond(now, Duration::ZERO, self.cms(304));
        };
        let uses_sim_smsc = matches!(decoded.smsc, pdu::Smsc::Empty);
        if uses_sim_smsc && self.smsc.is_empty() {
            return self.respond(now, Duration::ZERO, self.cms(330));
        }
        if !self.registered {
            return self.respond(now, Duration::from_millis(5), self.cms(331));
        }
        if self.cfg.faults.refuse_sends_when_report_memory_full
            && submit.status_report_request
            && self.ds == 2
            && self.report_memory_full()
        {
            return self.respond(now, Duration::from_millis(5), self.cms(322));
        }
        let to = submit.destination.number.clone();
        if let Some(&(_, code)) = self
            .cfg
            .faults
            .fail_recipients
            .iter()
            .find(|(r, _)| *r == to)
        {
            return self.respond(now, Duration::from_millis(5), self.cms(code));
        }
        if self.chance(self.cfg.faults.cms_error_rate) {
            let code = self.cfg.faults.cms_error_code;
            return self.respond(now, Duration::from_millis(5), self.cms(code));
        }
        let (lo, hi) = self.cfg.latency;
        let span = hi.saturating_sub(lo).as_micros() as u64;
        let work = lo
            + Duration::from_micros(if span > 0 {
                self.next_random() % span
            } else {
                0
            });
        let mr = self.mr;
        self.mr = self.mr.wrapping_add(1);
        let hang = self.chance(self.cfg.faults.hang_after_ctrl_z_rate);
        let concat = submit.user_data.concat();
        let accepted_at = self.free_at.max(now) + work;
        self.submitted.push(Submitted {
            time: self.wall(accepted_at),
            modem: self.cfg.id.clone(),
            mr,
            to: to.clone(),
            text: submit.user_data.text().unwrap_or_default().to_string(),
            part: concat.map_or(1, |c| c.seq),
            total: concat.map_or(1, |c| c.total),
            reference: concat.map(|c| c.reference),
            answered: !hang,
            latency_us: work.as_micros() as u64,
        });
        if hang {
            // The network has it; the answer is lost. The modem is busy meanwhile.
            self.free_at = accepted_at;
        } else {
            self.respond(now, work, format!("\r\n+CMGS: {mr}\r\n\r\nOK\r\n"));
        }
        if submit.status_report_request {
            self.schedule_reports(accepted_at, mr, &to);
        }
    }

    fn schedule_reports(&mut self, accepted_at: Instant, mr: u8, to: &str) {
        let delay = self.cfg.report_delay;
        let scts = build::timestamp_at(self.wall(accepted_at), 32);
        let report = |at: Instant, st: u8, m: &mut SimModem| {
            let dt = build::timestamp_at(m.wall(at), 32);
            if let Ok(pdu) = build::status_report(Some(&m.cfg.smsc.clone()), mr, to, &scts, &dt, st)
            {
                m.schedule(at, Due::Report { pdu });
            }
        };
        match self.cfg.report_outcome {
            ReportOutcome::Delivered => report(accepted_at + delay, 0x00, self),
            ReportOutcome::Failed => report(accepted_at + delay, 0x46, self),
            ReportOutcome::StillTryingThenDelivered => {
                report(accepted_at + delay, 0x30, self);
                report(accepted_at + delay * 2, 0x00, self);
            }
            ReportOutcome::Never => {}
        }
    }

    fn deliver_report(&mut self, pdu: Vec<u8>) -> Option<Vec<u8>> {
        match self.ds {
            1 => {
                let comma = if self.cfg.profile.cds_leading_comma {
                    ","
                } else {
                    ""
                };
                Some(
                    format!(
                        "\r\n+CDS: {comma}{}\r\n{}\r\n",
                        tpdu_len(&pdu),
                        pdu::to_hex(&pdu)
                    )
                    .into_bytes(),
                )
            }
            2 => {
                let mem_name = self.cfg.profile.report_mem;
                let mem = if mem_name == "SR" {
                    &mut self.sr
                } else {
                    &mut self.sm
                };
                // A full memory loses the report.
                let i = mem.iter().position(Option::is_none)?;
                mem[i] = Some(Stored { stat: 0, pdu });
                // Quectel EC25/EG25 keep it in SR but announce "SM".
                let announced = if self.cfg.profile.report_storage_broken {
                    "SM"
                } else {
                    mem_name
                };
                Some(self.urc(&format!("+CDSI: \"{announced}\",{i}")))
            }
            _ => None,
        }
    }

    fn deliver_incoming(&mut self, pdu: Vec<u8>) -> Option<Vec<u8>> {
        if self.mt == 2 {
            return Some(
                format!("\r\n+CMT: ,{}\r\n{}\r\n", tpdu_len(&pdu), pdu::to_hex(&pdu)).into_bytes(),
            );
        }
        let free = if self.cfg.faults.sim_full {
            None
        } else {
            self.sm.iter().position(Option::is_none)
        };
        match free {
            Some(i) => {
                self.sm[i] = Some(Stored { stat: 0, pdu });
                (self.mt == 1).then(|| self.urc(&format!("+CMTI: \"SM\",{i}")))
            }
            None => {
                self.waiting.push_back(pdu);
                None
            }
        }
    }

    fn release_waiting(&mut self, now: Instant) {
        if self.cfg.faults.sim_full {
            return;
        }
        if let Some(pdu) = self.waiting.pop_front() {
            self.schedule(now + Duration::from_millis(5), Due::Incoming { pdu });
        }
    }
}

/// TPDU length of a PDU that starts with an SMSC field.
fn tpdu_len(pdu: &[u8]) -> usize {
    pdu.len() - 1 - pdu.first().copied().unwrap_or(0) as usize
}
