//! The `smsgw` command line: argument definitions (clap) and the commands that
//! need no daemon. Kept in the library so integration tests can drive it too.
//!
//! Exit codes: 0 success, 2 invalid input (a PDU that does not decode, a number or
//! text that cannot be encoded, bad arguments), 1 anything else.

use crate::pdu::{self, ConcatRef, Encoding, Layout, SubmitOptions};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;

/// Exit code for input the user can fix (mirrors clap's own usage errors).
pub const EXIT_INVALID_INPUT: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "smsgw",
    version,
    about = "SMS gateway for GSM serial modems and modem pools"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Encode and decode SMS PDUs (for technicians and tests).
    #[command(subcommand)]
    Pdu(PduCommand),
}

#[derive(Debug, Subcommand)]
pub enum PduCommand {
    /// Decode a hex PDU (SMS-DELIVER, SMS-SUBMIT or SMS-STATUS-REPORT) and print it as JSON.
    Decode(DecodeArgs),
    /// Encode TEXT to NUMBER as SMS-SUBMIT PDUs; prints one JSON line per part.
    Encode(EncodeArgs),
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The PDU in hex, as the modem printed it (with or without the SMSC field).
    pub hex: String,
    /// The TPDU length the modem announced (`+CMGR: 1,,<len>`), to locate the SMSC field.
    #[arg(long, conflicts_with = "no_smsc")]
    pub tpdu_len: Option<usize>,
    /// The PDU has no SMSC field (a bare TPDU).
    #[arg(long)]
    pub no_smsc: bool,
    /// Print the JSON on one line.
    #[arg(long)]
    pub compact: bool,
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// Destination: an optional leading + and digits.
    #[arg(long)]
    pub to: String,
    /// SMSC number to embed (default: none, the modem uses its AT+CSCA setting).
    #[arg(long)]
    pub smsc: Option<String>,
    /// Request a delivery report for every part.
    #[arg(long)]
    pub report: bool,
    /// Relative validity period in minutes (rounded up to what the PDU can express).
    #[arg(long, value_name = "MINUTES")]
    pub validity: Option<u32>,
    /// Send as class 0 ("flash"): shown at once, not stored.
    #[arg(long)]
    pub flash: bool,
    /// Concatenation reference for multipart messages (0-255, or 0-65535 with --ref16).
    #[arg(long = "ref", value_name = "N", default_value_t = 0)]
    pub reference: u16,
    /// Use a 16-bit concatenation reference.
    #[arg(long)]
    pub ref16: bool,
    /// Always use UCS2, even when GSM-7 would do.
    #[arg(long)]
    pub ucs2: bool,
    /// The most parts the text may take.
    #[arg(long, default_value_t = 10)]
    pub max_parts: usize,
    /// The message text.
    pub text: String,
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Pdu(PduCommand::Decode(a)) => pdu_decode(&a),
        Command::Pdu(PduCommand::Encode(a)) => pdu_encode(&a),
    }
}

fn invalid(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("smsgw: {msg}");
    Ok(ExitCode::from(EXIT_INVALID_INPUT))
}

fn pdu_decode(a: &DecodeArgs) -> anyhow::Result<ExitCode> {
    let layout = match (a.tpdu_len, a.no_smsc) {
        (Some(n), _) => Layout::TpduLen(n),
        (None, true) => Layout::TpduOnly,
        (None, false) => Layout::Auto,
    };
    let decoded = match pdu::decode_hex(&a.hex, layout) {
        Ok(d) => d,
        Err(e) => return invalid(format_args!("cannot decode PDU: {e}")),
    };
    let json = if a.compact {
        serde_json::to_string(&decoded)?
    } else {
        serde_json::to_string_pretty(&decoded)?
    };
    writeln!(std::io::stdout().lock(), "{json}")?;
    Ok(ExitCode::SUCCESS)
}

fn pdu_encode(a: &EncodeArgs) -> anyhow::Result<ExitCode> {
    let concat_ref = if a.ref16 {
        ConcatRef::Ref16(a.reference)
    } else {
        match u8::try_from(a.reference) {
            Ok(r) => ConcatRef::Ref8(r),
            Err(_) => return invalid("--ref must be 0-255 (use --ref16 for larger references)"),
        }
    };
    let opts = SubmitOptions {
        smsc: a.smsc.clone(),
        request_report: a.report,
        validity_minutes: a.validity,
        flash: a.flash,
        concat_ref,
        max_parts: a.max_parts,
        encoding: if a.ucs2 {
            Encoding::Ucs2
        } else {
            Encoding::Auto
        },
    };
    let parts = match pdu::encode_submit(&a.to, &a.text, &opts) {
        Ok(p) => p,
        Err(e) => return invalid(format_args!("cannot encode: {e}")),
    };
    let mut out = std::io::stdout().lock();
    for p in parts {
        writeln!(out, "{}", serde_json::to_string(&p)?)?;
    }
    Ok(ExitCode::SUCCESS)
}
