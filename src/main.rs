//! The `kmsd` binary: parse the configuration, start logging, serve until a signal.
//! `kmsd rotate-root-key ...` is the one offline subcommand ([`kmsd::admin`]).

use kmsd::config::{Config, ConfigError, LogFormat, ProcessEnv};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if kmsd::admin::is_admin_command(&args) {
        return kmsd::admin::run(args).await;
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
    init_tracing(&config);
    match kmsd::server::serve(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("kmsd: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
