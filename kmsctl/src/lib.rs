#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! kmsctl: the operator command line of kmsd, on kmsd-api (the gRPC clients
//! [`kmsd_api::pb`] generated from the server's proto, and its operation catalogue
//! [`kmsd_api::ops`]) and tonic's client; nothing of the server itself.
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | the command line, and which server operation each command calls |
//! | [`connect`] | endpoint, TLS and mTLS, the bearer token |
//! | [`commands`] | one handler per command group |
//! | [`output`] | aligned text or JSON |
//! | [`files`] | binary data in and out of files; ciphertext files |
//! | [`failure`] | errors and exit codes |
//! | [`retry`] | idempotency tokens, and the retries of a creation |

pub mod cli;
pub mod commands;
pub mod connect;
pub mod failure;
pub mod files;
pub mod output;
pub mod retry;

use std::process::ExitCode;

use clap::Parser;

/// Parses the command line, runs the command, prints the result or the error, and
/// returns the exit code ([`failure::ExitClass`]).
pub async fn main_with_args(args: Vec<std::ffi::OsString>) -> ExitCode {
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // --help, --version, or a usage error (exit 2): clap prints it.
        Err(err) => err.exit(),
    };
    let format = cli.output;
    match commands::run(cli).await {
        Ok(shown) => {
            shown.print(format);
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("kmsctl: {failure}");
            ExitCode::from(failure.class() as u8)
        }
    }
}
