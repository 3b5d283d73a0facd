//! Logging: the tracing subscriber the `kmsd` binary installs, writing to stderr.
//!
//! Colour (ANSI escape codes) only when stderr is a terminal and `NO_COLOR` is not set
//! (<https://no-color.org>): a log written to a file, a pipe or a container runtime's
//! collector must hold plain text that grep and log shippers can read.

use std::ffi::OsStr;
use std::io::IsTerminal;

use crate::config::{Config, LogFormat};

/// Whether text logs are coloured: only on a terminal, and never when `NO_COLOR` is set
/// to anything but the empty string.
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Installs the global subscriber for `config`'s filter and format, on stderr. A filter
/// that does not parse falls back to `info` (the config already checked the common
/// mistakes; logging must start whatever it says).
pub fn init(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(
            use_colour(true, Some(OsStr::new(""))),
            "empty counts as unset"
        );
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(
            !use_colour(true, Some(OsStr::new("0"))),
            "any value turns it off"
        );
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some(OsStr::new("1"))));
    }
}
