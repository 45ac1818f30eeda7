//! The `smsgw` binary: parses the command line and hands over to [`smsgw::cli`].

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = smsgw::cli::Cli::parse();
    match smsgw::cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("smsgw: {e:#}");
            ExitCode::FAILURE
        }
    }
}
