//! Parsers for the replies the daemon uses. Pure functions over a response's
//! lines; each tolerates the dialects real modems produce (reference/modems.md §2.2:
//! unquoted fields, missing spaces, extra fields, UCS2-hex strings, nibble-swapped
//! ICCIDs) and returns `None` rather than guess.

use serde::Serialize;

/// The arguments after `prefix` on the first line that has it.
fn args<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::trim)
}

/// Splits on commas outside double quotes; strips quotes and blanks from each field.
/// An unterminated quote runs to the end of the line.
pub fn fields(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out
}

/// `+CMGS: <mr>[,<ackpdu>]`: the message reference the status report will carry.
pub fn cmgs(lines: &[String]) -> Option<u8> {
    let a = args(lines, "+CMGS:")?;
    fields(a).first()?.parse().ok()
}

/// Signal quality from `+CSQ: <rssi>,<ber>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Signal {
    /// 0..=31, or 99 when unknown.
    pub rssi: u8,
    pub ber: u8,
}

impl Signal {
    /// Received signal strength in dBm (27.007 §8.5), `None` when unknown.
    pub fn dbm(&self) -> Option<i32> {
        match self.rssi {
            0..=31 => Some(-113 + 2 * i32::from(self.rssi)),
            _ => None,
        }
    }

    /// 0..=5 bars for people (0 = none or unknown).
    pub fn bars(&self) -> u8 {
        match self.rssi {
            0..=1 | 99.. => 0,
            2..=9 => 1,
            10..=14 => 2,
            15..=19 => 3,
            20..=24 => 4,
            _ => 5,
        }
    }
}

pub fn csq(lines: &[String]) -> Option<Signal> {
    let f = fields(args(lines, "+CSQ:")?);
    Some(Signal {
        rssi: f.first()?.parse().ok()?,
        ber: f.get(1).and_then(|b| b.parse().ok()).unwrap_or(99),
    })
}

/// Network registration (27.007 §7.2 `<stat>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    NotRegistered,
    Home,
    Searching,
    Denied,
    Unknown,
    Roaming,
    /// Any other value (SMS-only and emergency variants).
    Other(u8),
}

impl Registration {
    pub fn from_stat(stat: u8) -> Registration {
        match stat {
            0 => Registration::NotRegistered,
            1 => Registration::Home,
            2 => Registration::Searching,
            3 => Registration::Denied,
            4 => Registration::Unknown,
            5 => Registration::Roaming,
            n => Registration::Other(n),
        }
    }

    /// Registered on a network that can carry SMS (home or roaming; 6/7 are SMS-only variants).
    pub fn is_registered(&self) -> bool {
        matches!(
            self,
            Registration::Home | Registration::Roaming | Registration::Other(6 | 7)
        )
    }
}

/// `AT+CREG?` -> `+CREG: <n>,<stat>[,<lac>,<ci>[,<act>]]`. Tolerates unquoted,
/// empty, spaced and badly quoted LAC/CI (Huawei, Sierra); a bare `OK` gives `None`.
pub fn creg(lines: &[String]) -> Option<Registration> {
    let a = ["+CREG:", "+CGREG:", "+CEREG:"]
        .iter()
        .find_map(|p| args(lines, p))?;
    let f = fields(a);
    let stat = f.get(1).or(f.first())?.parse().ok()?;
    Some(Registration::from_stat(stat))
}

/// `+COPS: <mode>[,<format>,<oper>[,<act>]]`: the operator name, if registered.
pub fn cops(lines: &[String]) -> Option<String> {
    let f = fields(args(lines, "+COPS:")?);
    f.get(2).filter(|o| !o.is_empty()).cloned()
}

/// One line of an incoming call (27.007 §6.4, §7.18).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CallLine {
    /// `RING` or `+CRING: <type>`: the phone rings (repeated every few seconds).
    Ring,
    /// `+CLIP: "<number>",<type>,...`: who calls; `None` when withheld.
    Caller(Option<String>),
    /// `NO CARRIER`: the call ended.
    Ended,
}

/// Reads a line the URC registry classified as a call.
pub fn call_line(line: &str) -> Option<CallLine> {
    let l = line.trim();
    if l == "RING" || l.starts_with("+CRING:") {
        return Some(CallLine::Ring);
    }
    if l == "NO CARRIER" {
        return Some(CallLine::Ended);
    }
    let rest = l.strip_prefix("+CLIP:")?;
    let f = fields(rest);
    let number = f.first().map(|n| n.trim().to_string()).filter(|n| {
        // Dialling digits (27.007 §7.18): service numbers carry * and #.
        !n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || "+*#".contains(c))
    });
    Some(CallLine::Caller(number))
}

/// `+CPIN: READY` / `SIM PIN` / `SIM PUK` ...
pub fn cpin(lines: &[String]) -> Option<String> {
    Some(args(lines, "+CPIN:")?.trim_matches('"').to_string())
}

/// Storage use from `+CPMS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Storage {
    /// (memory name if given, used, total) for each of the up to three memories.
    pub memories: Vec<(Option<String>, u32, u32)>,
}

impl Storage {
    /// The first memory (where incoming messages are read from and deleted).
    pub fn first(&self) -> Option<(u32, u32)> {
        self.memories.first().map(|&(_, u, t)| (u, t))
    }
}

/// `+CPMS: 7,20,7,20,7,20` or `+CPMS: "SM",1,12,"SM",1,12,...` (Huawei).
pub fn cpms(lines: &[String]) -> Option<Storage> {
    let f = fields(args(lines, "+CPMS:")?);
    let mut memories = Vec::new();
    let mut i = 0;
    while i < f.len() {
        let name = if f[i].parse::<u32>().is_err() {
            i += 1;
            Some(f[i - 1].clone())
        } else {
            None
        };
        let (Some(used), Some(total)) = (f.get(i), f.get(i + 1)) else {
            break;
        };
        memories.push((name, used.parse().ok()?, total.parse().ok()?));
        i += 2;
    }
    (!memories.is_empty()).then_some(Storage { memories })
}

/// One message read with `+CMGR`/`+CMGL` in PDU mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredPdu {
    /// Memory index (`+CMGL` only; `+CMGR` was given it).
    pub index: Option<u32>,
    /// 0 received unread, 1 received read, 2 stored unsent, 3 stored sent; `None` when empty.
    pub stat: Option<u8>,
    /// The announced TPDU length (the last field of the header).
    pub length: Option<usize>,
    /// The PDU in hex, SMSC field included as the modem gave it.
    pub pdu: String,
}

/// Header variants: `+CMGR: 1,,25`, `+CMGR: 0,23`, `+CMGR: 24`, `+CMGR: ,,92`, `+CMGR: 4,1,,151`.
pub fn cmgr(lines: &[String]) -> Option<StoredPdu> {
    let (i, header) = lines
        .iter()
        .enumerate()
        .find_map(|(i, l)| Some((i, l.strip_prefix("+CMGR:")?)))?;
    let f = fields(header);
    let pdu = lines
        .get(i + 1)
        .filter(|l| super::urc::is_hex_line(l))?
        .clone();
    let stat = if f.len() >= 2 {
        f[0].parse().ok()
    } else {
        None
    };
    Some(StoredPdu {
        index: None,
        stat,
        length: f.last().and_then(|l| l.parse().ok()),
        pdu,
    })
}

/// `+CMGL: <index>,<stat>,[<alpha>],<length>` each followed by a PDU line.
/// Headers without a PDU line are skipped.
pub fn cmgl(lines: &[String]) -> Vec<StoredPdu> {
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(header) = l.strip_prefix("+CMGL:") else {
            continue;
        };
        let f = fields(header);
        let (Some(index), Some(pdu)) = (
            f.first().and_then(|x| x.parse().ok()),
            lines.get(i + 1).filter(|l| super::urc::is_hex_line(l)),
        ) else {
            continue;
        };
        out.push(StoredPdu {
            index: Some(index),
            stat: f.get(1).and_then(|s| s.parse().ok()),
            length: f.last().and_then(|s| s.parse().ok()),
            pdu: pdu.clone(),
        });
    }
    out
}

/// A bare identity line (`AT+CGSN`, `AT+CIMI`, `AT+CGMI`...): the first line,
/// without a `+CGSN:`-style prefix and quotes.
pub fn identity(lines: &[String]) -> Option<String> {
    let l = lines.iter().find(|l| !l.trim().is_empty())?;
    let v = match l.split_once(':') {
        Some((p, v)) if p.starts_with('+') || p.starts_with('^') => v,
        _ => l.as_str(),
    };
    let v = v.trim().trim_matches('"').trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// A 14..=17 digit IMEI or a 6..=15 digit IMSI: digits only.
pub fn digits(lines: &[String]) -> Option<String> {
    identity(lines).filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
}

/// ICCID from `+CCID: 8986...`, `+ICCID: ...`, bare digits, or Huawei
/// `^ICCID: "983351106111005079F8"` (nibble-swapped BCD, F filler).
pub fn iccid(lines: &[String]) -> Option<String> {
    if let Some(a) = args(lines, "^ICCID:") {
        let raw = a.trim_matches('"');
        let swapped: String = raw
            .as_bytes()
            .chunks(2)
            .flat_map(|p| p.iter().rev())
            .map(|&b| b as char)
            .filter(|c| *c != 'F' && *c != 'f')
            .collect();
        return (!swapped.is_empty()).then_some(swapped);
    }
    let v = identity(lines)?;
    let v = v.trim_end_matches(['F', 'f']).to_string();
    (v.len() >= 18 && v.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(v)
}

/// `+CSCA: "+8613800100500",145`. An empty SMSC gives `None`. A UCS2-hex value
/// (after `AT+CSCS="UCS2"`, quoted or not) is decoded.
pub fn csca(lines: &[String]) -> Option<String> {
    let f = fields(args(lines, "+CSCA:")?);
    let v = f.first()?.clone();
    if v.is_empty() {
        return None;
    }
    let is_ucs2_hex = v.len() >= 8
        && v.len() % 4 == 0
        && v.bytes().all(|b| b.is_ascii_hexdigit())
        && v.starts_with("00");
    if is_ucs2_hex {
        let bytes = crate::pdu::from_hex(&v).ok()?;
        let (s, _) = crate::pdu::ucs2::decode(&bytes);
        return Some(s);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_lines_ring_clip_and_hang_up() {
        assert_eq!(call_line("RING"), Some(CallLine::Ring));
        assert_eq!(call_line("+CRING: VOICE"), Some(CallLine::Ring));
        assert_eq!(call_line("NO CARRIER"), Some(CallLine::Ended));
        assert_eq!(
            call_line("+CLIP: \"+8613800138000\",145,\"\",,\"\",0"),
            Some(CallLine::Caller(Some("+8613800138000".into())))
        );
        assert_eq!(
            call_line("+CLIP: \"13800138000\",129"),
            Some(CallLine::Caller(Some("13800138000".into())))
        );
        // Withheld, or not a number at all (no injection through the caller id).
        assert_eq!(call_line("+CLIP: \"\",128"), Some(CallLine::Caller(None)));
        assert_eq!(
            call_line("+CLIP: \"1\n2\",129"),
            Some(CallLine::Caller(None))
        );
        assert_eq!(call_line("+CLIP:"), Some(CallLine::Caller(None)));
        assert_eq!(
            call_line("+CLIP: \"*99#\",129"),
            Some(CallLine::Caller(Some("*99#".into())))
        );
        assert_eq!(
            call_line("+CLIP: \"138 0013\",129"),
            Some(CallLine::Caller(None))
        );
        assert_eq!(call_line("+CMTI: \"SM\",1"), None);
    }

    #[test]
    fn fields_handle_quotes() {
        // Mismatched quotes (a real Huawei +CREG): the stat field survives.
        assert_eq!(fields(r#"2,1,"0B,"0100701",7"#), ["2", "1", "0B,0100701,7"]);
        assert_eq!(fields(r#" "SM",1"#), ["SM", "1"]);
    }
}
