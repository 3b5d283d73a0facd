//! Logging: the tracing subscriber the `kmsd` binary installs, writing to stderr.
//!
//! Colour (ANSI escape codes) only when stderr is a terminal and `NO_COLOR` is not set
//! (<https://no-color.org>): a log written to a file, a pipe or a container runtime's
//! collector must hold plain text that grep and log shippers can read.
//!
//! Every line logged during a call carries the call's span fields: `request_id`,
//! `operation`, and its W3C `trace_id`, `span_id` (and `parent_span_id` when the caller
//! sent a `traceparent`), so a trace ID found in an application's trace finds kmsd's
//! log lines and audit records of it. In text they prefix the line
//! (`call{request_id=… trace_id=…}:`); in JSON they are the `span` object and the
//! `spans` list.
//!
//! Failed calls are logged through [`failures`]: the first of a kind in full, then a
//! summary per interval, not a line per call.

use std::ffi::OsStr;
use std::io::IsTerminal;

pub mod failures;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

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
    subscriber(filter, config.log_format, colour, std::io::stderr).init();
}

/// The subscriber [`init`] installs, writing to `writer`.
fn subscriber<W>(
    filter: tracing_subscriber::EnvFilter,
    format: LogFormat,
    colour: bool,
    writer: W,
) -> tracing::Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(colour);
    match format {
        // The span fields (the call's request and trace IDs) are in every line.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .finish()
            .into(),
        LogFormat::Text => builder.finish().into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A line logged inside a call names the call's trace, in both formats.
    #[test]
    fn lines_logged_in_a_call_carry_its_trace_id() {
        let trace = crate::trace_context::TraceContext::start(None);
        for format in [LogFormat::Json, LogFormat::Text] {
            let written = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&written);
            let writer = move || Sink(Arc::clone(&sink));
            let filter = tracing_subscriber::EnvFilter::new("info");
            let dispatch = subscriber(filter, format, false, writer);
            tracing::dispatcher::with_default(&dispatch, || {
                let span = tracing::info_span!(
                    "call",
                    trace_id = %trace.trace_id,
                    span_id = %trace.span_id,
                );
                span.in_scope(|| tracing::info!("inside the call"));
            });
            let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
            let expected = match format {
                LogFormat::Json => format!("\"trace_id\":\"{}\"", trace.trace_id),
                LogFormat::Text => format!("trace_id={}", trace.trace_id),
            };
            assert!(text.contains(&expected), "{format:?}: {text}");
            assert!(text.contains(&trace.span_id.to_string()), "{text}");
        }
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

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
