//! Failed calls in the log without a line per call: the first failure of a kind is
//! logged in full, later ones of that kind within [`INTERVAL`] are only counted, and a
//! summary line (how many, the first and last request ID) follows when the interval
//! is over. A database cut for five seconds under load used to write thousands of WARN
//! lines; it now writes a few. Every failure is still counted in the metrics and, per
//! call, in the audit log.
//!
//! Summaries are written by the next failure of the kind after its interval, or by
//! [`FailureLog::flush_due`], which the server calls on a timer so a burst that simply
//! stops still gets its summary.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::error::KmsError;
use crate::request_id::RequestId;

/// How long later failures of a kind are counted before a summary is logged.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The kinds of failure that are logged: what the operator must look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An internal error (ERROR).
    Internal,
    /// The key store could not be reached or did not answer in time (WARN).
    StoreUnavailable,
}

impl Kind {
    /// The kind of `err`, when it is one the log must show.
    fn of(err: &KmsError) -> Option<Self> {
        match err {
            KmsError::Internal(_) => Some(Self::Internal),
            KmsError::StoreUnavailable(_) => Some(Self::StoreUnavailable),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Internal => "internal error",
            Self::StoreUnavailable => "key store unavailable",
        }
    }
}

/// The failures of one kind counted since its last full line.
#[derive(Debug)]
struct Window {
    opened: Instant,
    counted: u64,
    first: String,
    last: String,
}

/// Logs `err`, failed by the call `request_id`, through [`FAILURES`] when it is a kind
/// the operator must see (an internal error, the store unavailable); any transport
/// calls it where an error becomes its answer.
pub fn log_failed_call(err: &KmsError, request_id: &RequestId) {
    if let Some(kind) = Kind::of(err) {
        FAILURES.failed(kind, &request_id.to_string(), &err.detail());
    }
}

/// The process's failure log; see the module docs.
pub static FAILURES: LazyLock<FailureLog> = LazyLock::new(|| FailureLog::new(INTERVAL));

/// Counts failures per kind between full log lines.
#[derive(Debug)]
pub struct FailureLog {
    interval: Duration,
    windows: Mutex<HashMap<Kind, Window>>,
}

/// What the log should write for one failure.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// Nothing: counted for the summary.
    Counted,
    /// The failure in full, after the summary of the previous interval, if any.
    Full(Option<Summary>),
}

/// A summary of the failures of a kind counted in an interval.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    kind: Kind,
    count: u64,
    first: String,
    last: String,
    seconds: u64,
}

impl FailureLog {
    /// A log that counts for `interval` after each full line.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Logs a failure of `kind` for the call `request_id` (its `detail` only when it
    /// gets a full line), or counts it.
    pub fn failed(&self, kind: Kind, request_id: &str, detail: &str) {
        match self.note(kind, request_id, Instant::now()) {
            Line::Counted => {}
            Line::Full(summary) => {
                if let Some(summary) = summary {
                    write_summary(&summary);
                }
                match kind {
                    Kind::Internal => tracing::error!(request_id, detail, "internal error"),
                    Kind::StoreUnavailable => {
                        tracing::warn!(request_id, detail, "key store unavailable")
                    }
                }
            }
        }
    }

    /// Writes the summaries of intervals that are over; returns how many.
    pub fn flush_due(&self) -> usize {
        let summaries = self.take_due(Instant::now());
        summaries.iter().for_each(write_summary);
        summaries.len()
    }

    /// Writes every pending summary, due or not (at shutdown).
    pub fn flush_all(&self) -> usize {
        let summaries = self.take_due(Instant::now() + self.interval);
        summaries.iter().for_each(write_summary);
        summaries.len()
    }

    fn note(&self, kind: Kind, request_id: &str, now: Instant) -> Line {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(window) = windows.get_mut(&kind)
            && now.duration_since(window.opened) < self.interval
        {
            if window.counted == 0 {
                window.first = request_id.to_owned();
            }
            window.counted += 1;
            window.last = request_id.to_owned();
            return Line::Counted;
        }
        let previous = windows.insert(
            kind,
            Window {
                opened: now,
                counted: 0,
                first: String::new(),
                last: String::new(),
            },
        );
        Line::Full(previous.and_then(|window| self.summary(kind, window)))
    }

    fn take_due(&self, now: Instant) -> Vec<Summary> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let due: Vec<Kind> = windows
            .iter()
            .filter(|(_, w)| now.duration_since(w.opened) >= self.interval)
            .map(|(kind, _)| *kind)
            .collect();
        due.into_iter()
            .filter_map(|kind| {
                let window = windows.remove(&kind)?;
                self.summary(kind, window)
            })
            .collect()
    }

    fn summary(&self, kind: Kind, window: Window) -> Option<Summary> {
        (window.counted > 0).then_some(Summary {
            kind,
            count: window.counted,
            first: window.first,
            last: window.last,
            seconds: self.interval.as_secs(),
        })
    }
}

fn write_summary(summary: &Summary) {
    let message = format!(
        "{}: {} more calls failed the same way within {} s (not logged one by one; the \
         metrics and the audit log count each)",
        summary.kind.label(),
        summary.count,
        summary.seconds
    );
    let (count, first, last) = (summary.count, &summary.first, &summary.last);
    match summary.kind {
        Kind::Internal => {
            tracing::error!(count, first_request_id = %first, last_request_id = %last, "{message}")
        }
        Kind::StoreUnavailable => {
            tracing::warn!(count, first_request_id = %first, last_request_id = %last, "{message}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_one_line_then_one_summary() {
        let log = FailureLog::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(
            log.note(Kind::StoreUnavailable, "r0", start),
            Line::Full(None)
        );
        for i in 1..=1000 {
            let at = start + Duration::from_millis(i * 5);
            assert_eq!(
                log.note(Kind::StoreUnavailable, &format!("r{i}"), at),
                Line::Counted
            );
        }
        // Another kind has its own window.
        assert_eq!(log.note(Kind::Internal, "x", start), Line::Full(None));
        // Nothing is due before the interval ends.
        assert!(log.take_due(start + Duration::from_secs(9)).is_empty());
        let later = start + Duration::from_secs(11);
        assert_eq!(
            log.note(Kind::StoreUnavailable, "r1001", later),
            Line::Full(Some(Summary {
                kind: Kind::StoreUnavailable,
                count: 1000,
                first: "r1".into(),
                last: "r1000".into(),
                seconds: 10,
            }))
        );
        // A kind that had no more failures has nothing to summarise; one that had
        // some is summarised by the timer.
        assert_eq!(
            log.note(Kind::StoreUnavailable, "r1002", later),
            Line::Counted
        );
        let due = log.take_due(later + Duration::from_secs(10));
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(due[0].count, 1);
        assert!(log.take_due(later + Duration::from_secs(30)).is_empty());
    }
}
