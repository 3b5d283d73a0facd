//! The `kmsd` binary: parse the configuration, start logging, serve until a signal.
//! `kmsd rotate-root-key ...` and the other offline subcommands are [`kmsd::admin`]'s.
//! `kmsd audit verify FILE…` checks audit logs offline ([`kmsd::audit::chain`]).

/// mimalloc rather than glibc's malloc: a call's buffers are often freed on another
/// thread than the one that made them (tokio's work stealing, pairs the key pool's
/// workers make), and glibc's arenas then take locks. A tenth less server CPU per
/// EC key pair at saturation (docs/performance.md, section 4g). Secrets are wiped
/// before they are freed (`Zeroizing`), whichever allocator frees them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use kmsd::config::{Config, ConfigError, ProcessEnv};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if kmsd::admin::is_admin_command(&args) {
        return kmsd::admin::run(args).await;
    }
    // `kmsd audit verify FILE…`: offline, no configuration.
    if kmsd::audit::chain::is_audit_command(&args) {
        return kmsd::audit::chain::run(args);
    }
    let config = match Config::from_args(args, &ProcessEnv) {
        Ok(config) => config,
        // A bad flag, --help or --version: clap prints it and exits with its status.
        Err(ConfigError::Args(err)) => err.exit(),
        Err(err) => {
            eprintln!("kmsd: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    kmsd::logging::init(&config);
    match kmsd::server::serve(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("kmsd: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
