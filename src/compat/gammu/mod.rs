//! gammu-smsd's SQL tables, translated: `outbox` + `outbox_multipart` rows in,
//! `sentitems` rows out. This file is the pure part (rows as text in, messages,
//! sent items and status updates out); `db.rs` holds the SQL on each backend and
//! `sync.rs` the task that runs them.
//!
//! Exactly once without a transaction across two databases: a gammu row is
//! queued with the dedupe key [`dedupe_key`] (its `ID` and `InsertIntoDB`), so a
//! pickup repeated after a crash finds the row already queued. Its `outbox` row
//! is the marker that the outcome is not written back yet: `sentitems` rows are
//! written first (a repeat is ignored by their primary key), the `outbox` rows
//! deleted after. gammu's MySQL tables are MyISAM, without transactions, so
//! nothing here relies on one.

pub mod db;
pub mod sync;

use crate::pdu::udh;
use crate::store::{Delivery, NewMessage, OutboxRow, State};
use chrono::{DateTime, Datelike, Duration, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// The schema versions this layer reads: 17 (gammu 1.38 to 1.43; Debian
/// ships 1.42) and 18 (gammu 1.44.0, 2026-08), which adds `outbox.SendDays`
/// and the inbox grouping columns `MessageID`, `SequencePosition` and
/// `PartCount`. The columns themselves are probed ([`Schema`]), so a
/// database upgraded by hand is read by what it has.
pub const SUPPORTED_VERSIONS: &[i64] = &[17, 18];

/// The version-18 columns a database has.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Schema {
    /// `outbox.SendDays`.
    pub send_days: bool,
    /// `inbox.MessageID`, `SequencePosition`, `PartCount`.
    pub inbox_groups: bool,
}

/// Every column is read as text (NULL as `None`), so that any value another
/// system can write is parsed here, in one place, and a bad one rejects its row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Part {
    /// 1 for the `outbox` row, `SequencePosition` for `outbox_multipart`.
    pub seq: Option<String>,
    pub text: Option<String>,
    pub text_decoded: Option<String>,
    pub coding: Option<String>,
    pub udh: Option<String>,
    pub class: Option<String>,
}

/// One `outbox` row with its `outbox_multipart` rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    /// As the column holds it (the dedupe key, and written back unchanged).
    pub insert_into_db: Option<String>,
    /// `InsertIntoDB` in UTC, `YYYY-MM-DD HH:MM:SS`, and the other times too
    /// (the SQL layer converts each backend's own time).
    pub inserted_at: Option<String>,
    pub sending_datetime: Option<String>,
    /// gammu's lock, UTC.
    pub sending_timeout: Option<String>,
    pub send_before: Option<String>,
    pub send_after: Option<String>,
    pub destination: Option<String>,
    pub multipart: Option<String>,
    pub relative_validity: Option<String>,
    pub sender_id: Option<String>,
    pub delivery_report: Option<String>,
    pub creator_id: Option<String>,
    pub priority: Option<String>,
    /// `SendDays` (schema 18), `None` where the column is absent.
    pub send_days: Option<String>,
    /// The `outbox` row first, then `outbox_multipart` by `SequencePosition`.
    pub parts: Vec<Part>,
}

/// The dedupe key of a gammu row in smsgw's outbox. `InsertIntoDB` is in it
/// because gammu's IDs can come round again (a MySQL auto-increment reset by a
/// restart, a truncated table): a new message with an old ID is a new message.
///
/// An `InsertIntoDB` that is not a time (NULL, MySQL's zero date) is left
/// out: `sentitems` then gets the send time in its place, and the report
/// lookup falls back to [`bare_key`].
pub fn dedupe_key(e: &Entry) -> String {
    let raw = e.insert_into_db.as_deref().unwrap_or("");
    if crate::store::ts::parse_time(raw).is_none() {
        return bare_key(e.id);
    }
    let at: String = raw.chars().filter(char::is_ascii_digit).collect();
    format!("gammu:{}:{at}", e.id)
}

/// Whether no daemon holds gammu's lock on the row (NULL, or run out).
pub fn unlocked(e: &Entry, now: DateTime<Utc>) -> bool {
    match e.sending_timeout.as_deref().map(str::trim) {
        None | Some("") => true,
        Some(t) => crate::store::ts::parse_time(t).is_none_or(|t| t <= now),
    }
}

/// The dedupe key of a gammu row whose `InsertIntoDB` is not a time.
pub fn bare_key(id: i64) -> String {
    format!("gammu:{id}:")
}

/// What to do with a gammu row that smsgw has not queued yet.
#[derive(Debug, Clone, PartialEq)]
pub enum Pickup {
    /// Queue it.
    Queue(Box<NewMessage>),
    /// Not yet: a multipart message whose writer has not inserted every part
    /// (gammu-smsd-inject inserts them one statement at a time).
    Wait,
    /// It cannot be sent; it goes to `sentitems` with `Status = 'Error'`.
    Reject(String),
}

/// How long a multipart message may lack parts before it is rejected.
pub const MISSING_PARTS_GRACE: Duration = Duration::seconds(60);

/// gammu's boolean columns: `'true'`/`'false'` (MySQL enum, SQLite text) or a
/// PostgreSQL boolean as text (`true`, `t`).
fn truthy(v: Option<&str>) -> Result<bool, String> {
    match v.map(str::trim) {
        None | Some("") => Ok(false),
        Some(s) if ["true", "t", "1", "yes"].contains(&s.to_ascii_lowercase().as_str()) => Ok(true),
        Some(s) if ["false", "f", "0", "no"].contains(&s.to_ascii_lowercase().as_str()) => {
            Ok(false)
        }
        Some(s) => Err(format!("MultiPart {s:?} is neither true nor false")),
    }
}

fn int(name: &str, v: Option<&str>) -> Result<Option<i64>, String> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("{name} {s:?} is not a whole number")),
    }
}

fn time_utc(name: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, String> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => crate::store::ts::parse_time(s)
            .map(Some)
            .ok_or_else(|| format!("{name} {s:?} is not a time")),
    }
}

fn time_of_day(name: &str, v: Option<&str>) -> Result<Option<NaiveTime>, String> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => NaiveTime::parse_from_str(s, "%H:%M:%S")
            .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M:%S%.f"))
            .map(Some)
            .map_err(|_| format!("{name} {s:?} is not a time of day")),
    }
}

/// gammu's `Text` column: the text as hexadecimal UCS-2 (both text codings).
pub fn decode_hex_ucs2(hex: &str) -> Option<String> {
    let hex = hex.trim();
    if !hex.len().is_multiple_of(4) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect::<Option<_>>()?;
    let (s, lossy) = crate::pdu::ucs2::decode(&bytes);
    (!lossy).then_some(s)
}

/// The part's text: `TextDecoded`, or else `Text` decoded by `Coding`.
fn part_text(p: &Part) -> Result<String, String> {
    let coding = p.coding.as_deref().map(str::trim).unwrap_or("");
    match coding {
        "" | "Default_No_Compression" | "Unicode_No_Compression" => {}
        "8bit" => return Err("Coding 8bit (binary data) is not supported".into()),
        "Default_Compression" | "Unicode_Compression" => {
            return Err(format!(
                "Coding {coding} (compressed text) is not supported"
            ));
        }
        other => return Err(format!("unknown Coding {other:?}")),
    }
    if let Some(t) = p.text_decoded.as_deref().filter(|t| !t.is_empty()) {
        return Ok(t.to_string());
    }
    match p.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(String::new()),
        Some(hex) => decode_hex_ucs2(hex)
            .ok_or_else(|| "Text is not hexadecimal UCS-2 and TextDecoded is empty".to_string()),
    }
}

/// How many parts the writer's own UDH says the message has.
fn udh_total(udh_hex: Option<&str>) -> Option<u8> {
    let hex = udh_hex?.trim();
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    // A UDH as gammu stores it starts with its own length.
    let body = bytes.get(1..)?;
    udh::concat(&udh::parse(body).ok()?).map(|c| c.total)
}

/// The earliest instant at or after `t` inside the daily window
/// [`after`, `before`] (local times of day in `tz`); a window whose end is
/// before its start runs over midnight.
fn in_window<Tz: TimeZone>(
    t: DateTime<Utc>,
    after: NaiveTime,
    before: NaiveTime,
    tz: &Tz,
) -> DateTime<Utc> {
    let local = t.with_timezone(tz).naive_local();
    let now_t = local.time();
    let inside = if after <= before {
        now_t >= after && now_t <= before
    } else {
        now_t >= after || now_t <= before
    };
    if inside {
        return t;
    }
    let mut day = local.date();
    if now_t > after {
        day = day.succ_opt().unwrap_or(day);
    }
    let start = NaiveDateTime::new(day, after);
    tz.from_local_datetime(&start)
        .earliest()
        .map(|d| d.with_timezone(&Utc))
        // A start inside a DST gap: an hour later exists.
        .or_else(|| {
            tz.from_local_datetime(&(start + Duration::hours(1)))
                .earliest()
                .map(|d| d.with_timezone(&Utc))
        })
        .unwrap_or(t)
}

/// `SendDays` (schema 18): the weekdays a row may be sent on, Monday first,
/// or `None` for every day. gammu 1.44 keeps it as a bit mask, Monday 1,
/// Tuesday 2, ... Sunday 64, every day 127 (its default), and sends a row on a
/// day whose bit is set. NULL or empty is every day; 0 (no day) and anything
/// that is not a whole number from 1 to 127 are refused with a reason, so a
/// row is never sent on a day its writer did not mean.
pub fn weekdays(v: Option<&str>) -> Result<Option<[bool; 7]>, String> {
    let Some(s) = v.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let mask = match s.parse::<i64>() {
        Ok(m) if (1..=127).contains(&m) => m,
        Ok(0) => return Err("SendDays 0 names no day to send on".into()),
        _ => {
            return Err(format!(
            "SendDays {s:?} is not a day mask (1 Monday, 2 Tuesday, ... 64 Sunday; 127 every day)"
        ))
        }
    };
    if mask == 127 {
        return Ok(None);
    }
    let mut days = [false; 7];
    for (i, d) in days.iter_mut().enumerate() {
        *d = mask & (1 << i) != 0;
    }
    Ok(Some(days))
}

/// The instant the local day after `local` begins in `tz`.
fn next_local_midnight<Tz: TimeZone>(local: NaiveDateTime, tz: &Tz) -> Option<DateTime<Utc>> {
    let day = local.date().succ_opt()?;
    let start = day.and_hms_opt(0, 0, 0)?;
    tz.from_local_datetime(&start)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(start + Duration::hours(1)))
                .earliest()
        })
        .map(|d| d.with_timezone(&Utc))
}

/// Decides what a gammu row not yet in smsgw's outbox becomes. `now` is the
/// daemon's clock, `tz` the zone of `SendBefore`/`SendAfter` (the machine's).
pub fn pickup<Tz: TimeZone>(e: &Entry, now: DateTime<Utc>, tz: &Tz) -> Pickup {
    match translate(e, now, tz) {
        Ok(Some(m)) => Pickup::Queue(Box::new(m)),
        Ok(None) => Pickup::Wait,
        Err(why) => Pickup::Reject(why),
    }
}

fn translate<Tz: TimeZone>(
    e: &Entry,
    now: DateTime<Utc>,
    tz: &Tz,
) -> Result<Option<NewMessage>, String> {
    let first = e.parts.first().ok_or("the outbox row has no text part")?;
    let class = int("Class", first.class.as_deref())?.unwrap_or(-1);
    let flash = match class {
        -1 | 1..=3 => false,
        0 => true,
        127 => return Err("Class 127 is a USSD request, which smsgw does not send".into()),
        c => return Err(format!("Class {c} is not an SMS class (-1, 0-3)")),
    };
    let multipart = truthy(e.multipart.as_deref())?;
    let mut body = String::new();
    if multipart {
        let want = udh_total(first.udh.as_deref());
        let have = e.parts.len();
        let mut seqs = Vec::with_capacity(have);
        for (i, p) in e.parts.iter().enumerate() {
            let seq = if i == 0 {
                1
            } else {
                int("SequencePosition", p.seq.as_deref())?.ok_or("SequencePosition is NULL")?
            };
            seqs.push(seq);
        }
        let contiguous = seqs.iter().enumerate().all(|(i, s)| *s == i as i64 + 1);
        let complete = contiguous && want.is_none_or(|w| usize::from(w) == have);
        if !complete {
            let inserted = time_utc("InsertIntoDB", e.inserted_at.as_deref())?;
            if inserted.is_some_and(|t| now - t < MISSING_PARTS_GRACE) {
                return Ok(None);
            }
            return Err(match want {
                Some(w) => {
                    format!("multipart message with {have} of its {w} parts (positions {seqs:?})")
                }
                None => format!("multipart message with parts at positions {seqs:?}"),
            });
        }
    } else if e.parts.len() > 1 {
        return Err("MultiPart is false but outbox_multipart has rows for this ID".into());
    }
    for p in &e.parts {
        body.push_str(&part_text(p)?);
    }
    let priority = int("Priority", e.priority.as_deref())?.unwrap_or(0);
    let priority = priority.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    let report = match e.delivery_report.as_deref().map(str::trim) {
        Some("yes") => true,
        None | Some("") | Some("default") | Some("no") => false,
        Some(o) => return Err(format!("DeliveryReport {o:?} is not default, yes or no")),
    };
    let at = time_utc("SendingDateTime", e.sending_datetime.as_deref())?;
    let after = time_of_day("SendAfter", e.send_after.as_deref())?;
    let before = time_of_day("SendBefore", e.send_before.as_deref())?;
    let days = weekdays(e.send_days.as_deref())?;
    let mut send_at = at.unwrap_or(now).max(now);
    // The window, then the day; a day moved to is entered at its midnight,
    // so the window is applied again. Eight rounds reach any allowed day.
    for _ in 0..8 {
        if let (Some(a), Some(b)) = (after, before) {
            send_at = in_window(send_at, a, b, tz);
        }
        let local = send_at.with_timezone(tz).naive_local();
        let wd = local.weekday().num_days_from_monday() as usize;
        match days {
            Some(d) if !d[wd] => send_at = next_local_midnight(local, tz).unwrap_or(send_at),
            _ => break,
        }
    }
    let group = e
        .sender_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok(Some(NewMessage {
        recipient: e.destination.clone(),
        body: Some(body),
        category: None,
        priority,
        send_at: Some(send_at),
        expires_at: None,
        dedupe_key: Some(dedupe_key(e)),
        modem_group: group,
        request_report: report,
        flash,
        external_ref: Some(format!("gammu:{}", e.id)),
    }))
}

/// One `sentitems` row, as gammu-smsd writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentItem {
    pub id: i64,
    pub seq: i64,
    pub insert_into_db: Option<String>,
    /// UTC, `YYYY-MM-DD HH:MM:SS`.
    pub sending_datetime: String,
    pub destination: String,
    pub text: String,
    pub text_decoded: String,
    pub coding: String,
    pub udh: String,
    pub class: i64,
    pub sender_id: String,
    pub status: &'static str,
    pub status_code: i64,
    pub tpmr: i64,
    pub relative_validity: i64,
    pub creator_id: String,
}

/// What smsgw knows of one sent part (its record and report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentPart {
    pub seq: i64,
    pub modem: String,
    pub mr: Option<u8>,
    pub submitted_at: DateTime<Utc>,
    pub status: Delivery,
    pub report_at: Option<DateTime<Utc>>,
    /// TP-Status of the report, if one came.
    pub tp_status: Option<i64>,
}

fn utc_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn hex_ucs2(s: &str) -> String {
    crate::pdu::ucs2::encode(s)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

fn is_unicode(p: &Part) -> bool {
    p.coding.as_deref().map(str::trim) == Some("Unicode_No_Compression")
}

/// The `sentitems` rows for a gammu row whose smsgw row is final, or `None`
/// while it is not (queued, sending, retrying, ambiguous). A row smsgw rejected
/// before it was translated has `row = None` and the reason.
pub fn sent_items(
    e: &Entry,
    row: Option<&OutboxRow>,
    parts: &[SentPart],
    now: DateTime<Utc>,
) -> Option<Vec<SentItem>> {
    let state = row.map(|r| r.state);
    let status = match state {
        Some(State::Sent) => None,
        Some(State::Failed) => Some("SendingError"),
        None
        | Some(State::Rejected)
        | Some(State::Expired)
        | Some(State::Cancelled)
        | Some(State::Suppressed) => Some("Error"),
        Some(State::Queued | State::Sending | State::Retrying | State::Ambiguous) => return None,
    };
    let base = |seq: i64, p: Option<&Part>| SentItem {
        id: e.id,
        seq,
        insert_into_db: e.insert_into_db.clone(),
        sending_datetime: utc_text(now),
        destination: e.destination.clone().unwrap_or_default(),
        text: String::new(),
        text_decoded: String::new(),
        coding: if p.is_some_and(is_unicode) {
            "Unicode_No_Compression".into()
        } else {
            "Default_No_Compression".into()
        },
        udh: p.and_then(|p| p.udh.clone()).unwrap_or_default(),
        class: p
            .and_then(|p| p.class.as_deref())
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(-1),
        sender_id: e.sender_id.clone().unwrap_or_default(),
        status: "Error",
        status_code: -1,
        tpmr: -1,
        relative_validity: e
            .relative_validity
            .as_deref()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1),
        creator_id: e.creator_id.clone().unwrap_or_default(),
    };
    let with_text = |mut s: SentItem, p: Option<&Part>| {
        if let Some(t) = p.and_then(|p| part_text(p).ok()) {
            s.text = hex_ucs2(&t);
            s.text_decoded = t;
        }
        s
    };
    if let Some(status) = status {
        // One row per part the writer gave, as gammu records an unsent message.
        let n = e.parts.len().max(1);
        return Some(
            (0..n)
                .map(|i| {
                    let p = e.parts.get(i);
                    let mut s = with_text(base(i as i64 + 1, p), p);
                    s.status = status;
                    s
                })
                .collect(),
        );
    }
    // Sent: one row per part that reached the network. Where smsgw split the
    // text as the writer did, each row carries the writer's own part.
    let same_split = parts.len() == e.parts.len();
    Some(
        parts
            .iter()
            .map(|sp| {
                let p = same_split
                    .then(|| e.parts.get((sp.seq - 1).max(0) as usize))
                    .flatten();
                let mut s = base(sp.seq, p.or(e.parts.first()));
                if let Some(p) = p {
                    s = with_text(s, Some(p));
                } else if sp.seq == 1 {
                    // A different split: the whole text on the first row.
                    let whole: String = e.parts.iter().filter_map(|p| part_text(p).ok()).collect();
                    s.text = hex_ucs2(&whole);
                    s.text_decoded = whole;
                    s.udh = String::new();
                }
                s.sending_datetime = utc_text(sp.submitted_at);
                s.sender_id = sp.modem.clone();
                s.tpmr = sp.mr.map(i64::from).unwrap_or(-1);
                s.status = match sp.status {
                    Delivery::None => "SendingOKNoReport",
                    _ => "SendingOK",
                };
                s.status_code = 0;
                s
            })
            .collect(),
    )
}

/// A `sentitems` row waiting for its delivery report (`Status = 'SendingOK'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Awaiting {
    pub id: i64,
    pub seq: i64,
    pub insert_into_db: Option<String>,
}

/// The `Status`, `DeliveryDateTime` and `StatusError` a report gives a part,
/// or `None` while smsgw waits for it too.
pub fn delivery_update(p: &SentPart) -> Option<(&'static str, Option<String>, i64)> {
    let at = p.report_at.map(utc_text);
    match p.status {
        Delivery::Delivered => Some(("DeliveryOK", at, p.tp_status.unwrap_or(0))),
        Delivery::Failed => Some(("DeliveryFailed", at, p.tp_status.unwrap_or(-1))),
        Delivery::Unknown => Some(("DeliveryUnknown", at, -1)),
        Delivery::Pending | Delivery::None => None,
    }
}

/// The dedupe key of the message a `sentitems` row came from.
pub fn awaiting_key(a: &Awaiting) -> String {
    dedupe_key(&Entry {
        id: a.id,
        insert_into_db: a.insert_into_db.clone(),
        ..Default::default()
    })
}

/// One `inbox` row as gammu-smsd writes it. smsgw joins the parts of a
/// long message before it records it, so the whole text is one row with an
/// empty `UDH`: a front-end that joins parts by `UDH` reads it as a message
/// of one part, and one that reads rows alone sees it whole too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    /// UTC, `YYYY-MM-DD HH:MM:SS`.
    pub receiving_datetime: String,
    pub sender: String,
    pub coding: &'static str,
    pub text: String,
    pub text_decoded: String,
    /// The modem it came in on (gammu's PhoneID).
    pub recipient_id: String,
    /// smsgw's inbox id: written negated as schema 18's `MessageID`, then
    /// replaced by the row's own `ID`, as gammu sets it (one row per whole
    /// message, its `SequencePosition` and `PartCount` 1).
    pub message_id: i64,
}

/// The `inbox` row for a message smsgw recorded.
pub fn inbox_item(id: i64, m: &crate::store::InboxMessage) -> InboxItem {
    let gsm = crate::pdu::gsm7::septet_len(&m.body).is_some();
    InboxItem {
        receiving_datetime: utc_text(m.received_at),
        sender: m.sender.clone(),
        coding: if gsm {
            "Default_No_Compression"
        } else {
            "Unicode_No_Compression"
        },
        text: hex_ucs2(&m.body),
        text_decoded: m.body.clone(),
        recipient_id: m.modem.clone(),
        message_id: id,
    }
}

/// One `phones` row: a modem as gammu-smsd describes itself there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    /// gammu's PhoneID: the smsgw modem id.
    pub id: String,
    /// The table's key. A modem pool may report one IMEI for all its ports
    /// (gammu issue #334), so an IMEI another configured modem also reports
    /// is written `IMEI/modem-id`: each port keeps a row of its own. A modem
    /// that has not told its IMEI yet has no row.
    pub imei: String,
    pub imsi: String,
    pub net_code: String,
    pub net_name: String,
    pub client: String,
    /// 0-100, or -1 when unknown (gammu's percentage of the RSSI).
    pub signal: i64,
    pub send: bool,
    pub receive: bool,
    pub sent: i64,
    pub received: i64,
    /// UTC text: the row counts as alive until then (front-ends compare it with now).
    pub timeout: String,
}

/// The `phones` rows for the configured modems at `now`, refreshed every
/// `every` (the row stays alive for twice that).
pub fn phones(
    modems: &[crate::modem::ModemStatus],
    received: &std::collections::HashMap<String, i64>,
    now: DateTime<Utc>,
    every: Duration,
) -> Vec<Phone> {
    use crate::modem::ModemState;
    let imei_of = |m: &crate::modem::ModemStatus| m.info.imei.clone().filter(|i| !i.is_empty());
    // A modem gets its row once it has told its IMEI (the table's key), as
    // gammu-smsd writes it once connected.
    modems
        .iter()
        .filter(|m| imei_of(m).is_some())
        .map(|m| {
            let shared = imei_of(m).is_some_and(|i| {
                modems
                    .iter()
                    .filter(|o| imei_of(o).as_deref() == Some(i.as_str()))
                    .count()
                    > 1
            });
            let imei = imei_of(m).unwrap_or_default();
            let imei = if shared {
                format!("{imei}/{}", m.id)
            } else {
                imei
            };
            let op = m.operator.clone().unwrap_or_default();
            let numeric = !op.is_empty() && op.bytes().all(|b| b.is_ascii_digit() || b == b' ');
            let ready = m.state == ModemState::Ready;
            Phone {
                id: m.id.clone(),
                imei,
                imsi: m.info.imsi.clone().unwrap_or_default(),
                net_code: if numeric { op.clone() } else { "ERROR".into() },
                net_name: if numeric || op.is_empty() {
                    "ERROR".into()
                } else {
                    op
                },
                client: format!("smsgw {}", env!("CARGO_PKG_VERSION")),
                signal: m
                    .signal
                    .as_ref()
                    .filter(|s| s.rssi <= 31)
                    .map(|s| i64::from(s.rssi) * 100 / 31)
                    .unwrap_or(-1),
                send: ready,
                receive: ready,
                sent: i64::try_from(m.parts_sent).unwrap_or(i64::MAX),
                received: received.get(&m.id).copied().unwrap_or(0),
                timeout: utc_text(now + every * 2),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    fn now() -> DateTime<Utc> {
        "2026-12-03T06:00:00Z".parse().unwrap()
    }

    fn entry(text: &str) -> Entry {
        Entry {
            id: 7,
            insert_into_db: Some("2026-12-03 13:59:30".into()),
            inserted_at: Some("2026-12-03 05:59:30".into()),
            destination: Some("13800138000".into()),
            multipart: Some("FALSE".into()),
            parts: vec![Part {
                seq: Some("1".into()),
                text_decoded: Some(text.into()),
                coding: Some("Default_No_Compression".into()),
                class: Some("-1".into()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn reason(e: &Entry) -> String {
        match pickup(e, now(), &Utc) {
            Pickup::Reject(r) => r,
            other => panic!("not rejected: {other:?}"),
        }
    }

    #[test]
    fn a_plain_row_becomes_a_message_keyed_by_id_and_insert_time() {
        let Pickup::Queue(m) = pickup(&entry("hello"), now(), &Utc) else {
            panic!()
        };
        assert_eq!(m.body.as_deref(), Some("hello"));
        assert_eq!(m.dedupe_key.as_deref(), Some("gammu:7:20261203135930"));
        assert!(!m.request_report && !m.flash);
        assert_eq!(m.send_at, Some(now()));
    }

    #[test]
    fn text_comes_from_hex_ucs2_when_text_decoded_is_empty() {
        let mut e = entry("");
        e.parts[0].text = Some("00680069".into());
        let Pickup::Queue(m) = pickup(&e, now(), &Utc) else {
            panic!()
        };
        assert_eq!(m.body.as_deref(), Some("hi"));
        assert_eq!(decode_hex_ucs2("5C0A656C"), Some("尊敬".into()));
        for bad in ["0068006", "zz68", "D800"] {
            assert_eq!(decode_hex_ucs2(bad), None, "{bad}");
        }
    }

    #[test]
    fn hostile_values_reject_their_row_with_a_reason() {
        let with = |f: &dyn Fn(&mut Entry)| {
            let mut e = entry("x");
            f(&mut e);
            reason(&e)
        };
        assert!(with(&|e| e.parts[0].class = Some("127".into())).contains("USSD"));
        assert!(with(&|e| e.parts[0].class = Some("9223372036854775807".into())).contains("Class"));
        assert!(with(&|e| e.parts[0].class = Some("x".into())).contains("Class"));
        assert!(with(&|e| e.parts[0].coding = Some("8bit".into())).contains("8bit"));
        assert!(with(&|e| e.parts[0].coding = Some("EBCDIC".into())).contains("unknown Coding"));
        assert!(with(&|e| e.multipart = Some("maybe".into())).contains("MultiPart"));
        assert!(with(&|e| e.delivery_report = Some("always".into())).contains("DeliveryReport"));
        assert!(with(&|e| e.priority = Some("1e9".into())).contains("Priority"));
        assert!(
            with(&|e| e.sending_datetime = Some("0000-00-00 00:00:00".into()))
                .contains("SendingDateTime")
        );
        assert!(with(&|e| e.send_after = Some("25:00:00".into())).contains("SendAfter"));
        assert!(with(&|e| {
            e.parts[0].text_decoded = Some(String::new());
            e.parts[0].text = Some("not hex".into());
        })
        .contains("hexadecimal"));
        assert!(with(&|e| e.parts.push(Part::default())).contains("MultiPart is false"));
        assert!(with(&|e| e.parts.clear()).contains("no text part"));
        // Out-of-range numbers are clamped, not wrapped.
        let mut e = entry("x");
        e.priority = Some("99999999999".into());
        let Pickup::Queue(m) = pickup(&e, now(), &Utc) else {
            panic!()
        };
        assert_eq!(m.priority, i32::MAX);
    }

    #[test]
    fn a_multipart_message_waits_for_its_parts_then_is_rejected() {
        let mut e = entry("part 1 ");
        e.multipart = Some("true".into());
        e.parts[0].udh = Some("050003AA0301".into());
        e.parts.push(Part {
            seq: Some("2".into()),
            text_decoded: Some("part 2".into()),
            ..Default::default()
        });
        assert_eq!(pickup(&e, now(), &Utc), Pickup::Wait);
        e.inserted_at = Some("2026-12-03 05:00:00".into());
        assert!(reason(&e).contains("2 of its 3 parts"));
        // Complete: the writer's parts joined in order.
        e.parts.push(Part {
            seq: Some("3".into()),
            text_decoded: Some(" and 3".into()),
            ..Default::default()
        });
        let Pickup::Queue(m) = pickup(&e, now(), &Utc) else {
            panic!()
        };
        assert_eq!(m.body.as_deref(), Some("part 1 part 2 and 3"));
        // A gap in the positions is not a complete message.
        e.parts[2].seq = Some("4".into());
        assert!(reason(&e).contains("positions"));
    }

    #[test]
    fn send_days_are_gammus_day_mask_and_nothing_else() {
        assert_eq!(weekdays(Some("127")), Ok(None), "every day");
        assert_eq!(weekdays(None), Ok(None));
        assert_eq!(weekdays(Some("  ")), Ok(None));
        assert_eq!(
            weekdays(Some("31")),
            Ok(Some([true, true, true, true, true, false, false])),
            "Monday to Friday"
        );
        assert_eq!(
            weekdays(Some(" 64 ")),
            Ok(Some([false, false, false, false, false, false, true])),
            "Sunday"
        );
        assert_eq!(
            weekdays(Some("5")),
            Ok(Some([true, false, true, false, false, false, false])),
            "Monday and Wednesday"
        );
        for bad in [
            "0",
            "128",
            "-1",
            "12345",
            "Mon",
            "1.5",
            "9223372036854775808",
            "١",
        ] {
            assert!(weekdays(Some(bad)).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn send_days_move_the_send_to_an_allowed_day_inside_the_window() {
        // 2026-12-03 06:00 UTC is a Thursday, 14:00 in UTC+8.
        let cn = FixedOffset::east_opt(8 * 3600).unwrap();
        let mut e = entry("x");
        e.send_days = Some("8".into());
        let Pickup::Queue(m) = pickup(&e, now(), &cn) else {
            panic!()
        };
        assert_eq!(m.send_at, Some(now()), "Thursday is allowed");
        // Saturday only, between 09:00 and 10:00 local.
        e.send_days = Some("32".into());
        e.send_after = Some("09:00:00".into());
        e.send_before = Some("10:00:00".into());
        let Pickup::Queue(m) = pickup(&e, now(), &cn) else {
            panic!()
        };
        assert_eq!(
            m.send_at.unwrap(),
            "2026-12-05T01:00:00Z".parse::<DateTime<Utc>>().unwrap(),
            "Saturday 09:00 in UTC+8"
        );
        e.send_days = Some("someday".into());
        assert!(reason(&e).contains("SendDays"));
    }

    #[test]
    fn send_after_and_before_move_the_send_into_the_window() {
        let cn = FixedOffset::east_opt(8 * 3600).unwrap();
        let mut e = entry("x");
        // 06:00 UTC is 14:00 in China.
        e.send_after = Some("09:00:00".into());
        e.send_before = Some("12:00:00".into());
        let Pickup::Queue(m) = pickup(&e, now(), &cn) else {
            panic!()
        };
        assert_eq!(m.send_at, Some("2026-12-04T01:00:00Z".parse().unwrap()));
        e.send_before = Some("18:00:00".into());
        let Pickup::Queue(m) = pickup(&e, now(), &cn) else {
            panic!()
        };
        assert_eq!(m.send_at, Some(now()));
        // Over midnight: 22:00-07:00 from 14:00 waits for 22:00 today.
        e.send_after = Some("22:00:00".into());
        e.send_before = Some("07:00:00".into());
        let Pickup::Queue(m) = pickup(&e, now(), &cn) else {
            panic!()
        };
        assert_eq!(m.send_at, Some("2026-12-03T14:00:00Z".parse().unwrap()));
    }

    fn row(state: State) -> OutboxRow {
        OutboxRow {
            id: 1,
            recipient: None,
            category: "notice".into(),
            priority: 0,
            state,
            delivery: Delivery::None,
            attempts: 1,
            last_error: None,
            modem: None,
            parts_total: None,
            sent_at: None,
            lease_owner: None,
            external_ref: None,
        }
    }

    #[test]
    fn outcomes_become_sentitems_rows_as_gammu_writes_them() {
        let e = entry("hello");
        for s in [
            State::Queued,
            State::Sending,
            State::Retrying,
            State::Ambiguous,
        ] {
            assert_eq!(sent_items(&e, Some(&row(s)), &[], now()), None, "{s:?}");
        }
        let part = SentPart {
            seq: 1,
            modem: "s1".into(),
            mr: Some(42),
            submitted_at: now(),
            status: Delivery::Pending,
            report_at: None,
            tp_status: None,
        };
        let sent = sent_items(
            &e,
            Some(&row(State::Sent)),
            std::slice::from_ref(&part),
            now(),
        )
        .unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].status, sent[0].tpmr), ("SendingOK", 42));
        assert_eq!(sent[0].sender_id, "s1");
        assert_eq!(sent[0].text, "00680065006C006C006F");
        let failed = sent_items(&e, Some(&row(State::Failed)), &[], now()).unwrap();
        assert_eq!(failed[0].status, "SendingError");
        let rejected = sent_items(&e, None, &[], now()).unwrap();
        assert_eq!(rejected[0].status, "Error");
        let mut delivered = part.clone();
        delivered.status = Delivery::Delivered;
        delivered.report_at = Some(now());
        assert_eq!(
            delivery_update(&delivered),
            Some(("DeliveryOK", Some("2026-12-03 06:00:00".into()), 0))
        );
        assert_eq!(delivery_update(&part), None);
    }
}
