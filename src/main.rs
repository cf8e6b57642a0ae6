//! `natrec`: record NAT mappings from packets, answer "who held public IP X
//! (port P) at time T".
//!
//! Exit codes: 0 success (lookup: someone held it), 1 lookup found nobody,
//! 2 error (bad input, unreadable store or partition, bad query), 141 when
//! the reader of standard output went away (`natrec export | head`): quietly,
//! as a C tool killed by SIGPIPE would.
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
        Err(e) if reader_gone(&e) => ExitCode::from(141),
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

/// Whether `e` comes from writing to a pipe nobody reads any more (Rust
/// ignores SIGPIPE, so the write fails with `BrokenPipe` instead).
fn reader_gone(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
