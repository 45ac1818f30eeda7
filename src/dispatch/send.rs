//! One message on its way through a modem: the task that drives the modem part
//! by part and writes, after each part the network acknowledged and before the
//! next goes, the part's record, the marker moved to the next part and a
//! renewed lease, in one transaction. So a crash mid-message leaves every
//! acknowledged part recorded (never sent again) and at most the marked part
//! in doubt; and a row whose lease was lost (another instance took it over)
//! stops before its next part.

use super::clock::Clock;
use super::inbound::Entry;
use super::journal::Shared;
use crate::modem::{ModemHandle, PartSent, Progress, SendReport};
use crate::pdu::EncodedPart;
use crate::store::{Delivery, PartRecord, Store};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::warn;

/// How long one part's record may take before the send stops after it (the
/// part is recorded later, with the outcome; the rest waits).
const RECORD_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything one send needs.
pub struct Job {
    pub id: i64,
    pub owner: String,
    pub modem: ModemHandle,
    pub parts: Vec<EncodedPart>,
    /// Parts of the whole message.
    pub total: i32,
    pub recipient: String,
    pub report_requested: bool,
    pub lease: Duration,
    pub clock: Clock,
    pub store: Store,
    /// Where an acknowledged part goes when its record fails.
    pub journal: Shared,
}

/// How a send went.
#[derive(Debug)]
pub struct Sent {
    pub report: SendReport,
    /// The parts recorded as they were acknowledged.
    pub recorded: Vec<u8>,
    pub started: std::time::Instant,
}

/// Sends the job's parts, recording each before the next goes.
pub async fn run(job: Job) -> Sent {
    let started = std::time::Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<Progress>();
    let seqs: Vec<u8> = job.parts.iter().map(|p| p.seq).collect();
    let send = job.modem.send_with_progress(job.parts.clone(), Some(tx));
    tokio::pin!(send);
    let mut recorded = Vec::new();
    let report = loop {
        tokio::select! {
            r = &mut send => break r,
            Some(p) = rx.recv() => {
                let next = seqs
                    .iter()
                    .skip_while(|s| **s != p.part.seq)
                    .nth(1)
                    .map(|s| i32::from(*s));
                let verdict = acknowledged(&job, &p.part, next).await;
                crate::failpoint::hit("after_part_record");
                if verdict.is_ok() {
                    recorded.push(p.part.seq);
                }
                let _ = p.go_on.send(verdict);
            }
        }
    };
    // A progress message that raced the reply is answered (the send is over).
    while let Ok(p) = rx.try_recv() {
        let _ = p.go_on.send(Err("the send is over".into()));
    }
    Sent {
        report,
        recorded,
        started,
    }
}

/// Records one acknowledged part and moves the marker; `Err` stops the send.
async fn acknowledged(job: &Job, p: &PartSent, next: Option<i32>) -> Result<(), String> {
    let rec = PartRecord {
        seq: i32::from(p.seq),
        total: job.total,
        modem: job.modem.id.clone(),
        recipient: job.recipient.clone(),
        mr: p.mr,
        submitted_at: p.at,
        status: Delivery::initial(job.report_requested),
    };
    let until = job.clock.db()
        + chrono::Duration::from_std(job.lease).unwrap_or(chrono::Duration::seconds(60));
    let write = job
        .store
        .part_acknowledged(&job.owner, job.id, &rec, next, until);
    let r = tokio::time::timeout(RECORD_TIMEOUT, write).await;
    if !matches!(r, Ok(Ok(_))) {
        // The database is away: the fact goes to the journal (synced) before the
        // send stops, so that a kill now loses it not.
        let e = Entry::Part {
            id: job.id,
            part: rec.clone(),
        };
        if let Err(err) = job.journal.append(&e) {
            warn!(id = job.id, error = %err, "cannot journal an acknowledged part");
        }
    }
    match r {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => {
            warn!(
                id = job.id,
                part = p.seq,
                "the row is no longer ours (its lease was taken over): stopping the send"
            );
            Err("the row is no longer held by this instance (lease lost)".into())
        }
        Ok(Err(e)) => {
            warn!(id = job.id, part = p.seq, error = %e, "cannot record an acknowledged part: the rest waits");
            Err(format!("the acknowledged part could not be recorded ({e})"))
        }
        Err(_) => Err("the database did not record the acknowledged part in time".into()),
    }
}
