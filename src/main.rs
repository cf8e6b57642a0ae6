//! `natrec`: record NAT mappings from packets, answer "who held public IP X
//! (port P) at time T".
//!
//! Exit codes: 0 success (lookup: someone held it), 1 lookup found nobody,
//! 2 error (bad input, unreadable store or partition, bad query).
#![forbid(unsafe_code)]

mod audit;
mod cli;
mod demo;
#[cfg(feature = "live")]
mod live;
mod query;
mod record;
mod replay;
mod status;
mod timefmt;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            let mut msg = format!("natrec: {e}");
            for cause in e.chain().skip(1) {
                msg.push_str(&format!(": {cause}"));
            }
            eprintln!("{msg}");
            ExitCode::from(2)
        }
    }
}
