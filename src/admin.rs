//! Offline administration: `kmsd rotate-root-key`, run with the server stopped.
//!
//! `kmsd` with any other first argument (or none) is the server, parsed by
//! [`crate::config::Config::from_args`] as always; `main.rs` hands the arguments here
//! only when the first one is [`ROTATE_ROOT_KEY`]. See `docs/destruction.md` for what
//! rotation is for.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use crate::keys::root_key;
use crate::store::StoreSettings;

/// The subcommand that replaces the root key.
pub const ROTATE_ROOT_KEY: &str = "rotate-root-key";

/// `kmsd rotate-root-key`: reseal every key version under a new root key.
#[derive(Debug, Parser)]
#[command(
    name = "kmsd rotate-root-key",
    bin_name = "kmsd rotate-root-key",
    about = "Reseal all key material and the root key check under a new root key, in one \
             transaction (the server must be stopped). Afterwards the old root key opens \
             nothing: discard it, and destroyed keys are gone from every earlier backup."
)]
struct RotateArgs {
    /// The data directory of the (stopped) server.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// The root key the store is sealed under now.
    #[arg(long, value_name = "OLD")]
    root_key_file: PathBuf,
    /// The root key to reseal under (e.g. `(umask 077; head -c 32 /dev/urandom > new.key)`).
    #[arg(long, value_name = "NEW")]
    new_root_key_file: PathBuf,
}

/// Whether `args` (the process arguments, program name first) ask for a subcommand of
/// this module rather than the server.
pub fn is_admin_command(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|arg| arg == ROTATE_ROOT_KEY)
}

/// Runs the subcommand `args` names (program name first, then the subcommand);
/// prints what it did, or why it changed nothing, and returns the exit code.
pub async fn run(args: Vec<OsString>) -> ExitCode {
    let args = match RotateArgs::try_parse_from(args.into_iter().skip(1)) {
        Ok(args) => args,
        Err(err) => err.exit(),
    };
    match rotate(&args).await {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("kmsd rotate-root-key: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn rotate(args: &RotateArgs) -> Result<String, String> {
    let old = root_key::load(&args.root_key_file).map_err(|err| err.to_string())?;
    let new = root_key::load(&args.new_root_key_file).map_err(|err| err.to_string())?;
    let settings = StoreSettings::Embedded {
        data_dir: args.data_dir.clone(),
    };
    let started = Instant::now();
    let rotated = root_key::rotate(&settings, old, new)
        .await
        .map_err(|err| err.to_string())?;
    Ok(format!(
        "resealed {} key versions and the root key check under {} in one transaction, and \
         compacted the store ({} -> {} bytes) in {} ms. Start the server with \
         --root-key-file {}; then destroy every copy of {}: with it go the destroyed keys \
         in every earlier backup.",
        rotated.versions,
        args.new_root_key_file.display(),
        rotated.size_before,
        rotated.size_after,
        started.elapsed().as_millis(),
        args.new_root_key_file.display(),
        args.root_key_file.display(),
    ))
}
