//! Creation that is safe to retry: every create command sends one idempotency token
//! (`--idempotency-token`, else a fresh UUID v4) and retries the call with that same
//! token when the answer says the call may not have happened or may succeed later
//! (`UNAVAILABLE`, `ABORTED`, `DEADLINE_EXCEEDED`, or no connection at all). The
//! server answers a retry of a call that did go through with what that call made, so
//! a retry never makes a second key, version, secret or client key.

use std::future::Future;
use std::time::Duration;

use clap::Args;
use tonic::Code;
use tonic_types::StatusExt;

/// Attempts of one creation, the first included.
pub const MAX_ATTEMPTS: u32 = 5;

/// The pause before the first retry; doubled before each next one.
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// The longest pause, whatever the server's RetryInfo asks.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// `--idempotency-token` of the create commands.
#[derive(Clone, Debug, Default, Args)]
pub struct TokenArgs {
    /// The idempotency token to send (1 to 64 printable ASCII characters); a new UUID
    /// when unset. Running the command again with the same token within 24 hours
    /// answers what the first run made instead of making another.
    #[arg(long, value_name = "TOKEN")]
    pub idempotency_token: Option<String>,
}

impl TokenArgs {
    /// The token to send: the one given, or a fresh UUID v4.
    pub fn token(&self) -> String {
        self.idempotency_token
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
    }
}

/// Whether a call that failed with `status` may be retried with the same token.
pub fn is_retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Aborted | Code::DeadlineExceeded
    )
}

/// How long to wait before retry `retry` (1-based): the server's RetryInfo delay if it
/// sent one and it is longer, else the doubling backoff, at most [`MAX_PAUSE`].
pub fn pause(retry: u32, status: &tonic::Status) -> Duration {
    let backoff = FIRST_PAUSE.saturating_mul(1 << retry.saturating_sub(1).min(5));
    let asked = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .unwrap_or_default();
    backoff.max(asked).min(MAX_PAUSE)
}

/// Runs `call` (which must send the same token each time) until it succeeds, fails
/// with a status that is not retryable, or [`MAX_ATTEMPTS`] are spent.
pub async fn retried<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(status) if is_retryable(&status) && attempt < MAX_ATTEMPTS => {
                let wait = pause(attempt, &status);
                eprintln!(
                    "kmsctl: attempt {attempt} of {MAX_ATTEMPTS} failed ({:?}: {}); retrying \
                     with the same idempotency token in {wait:?}",
                    status.code(),
                    status.message()
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn a_token_is_the_given_one_or_a_new_uuid() {
        let given = TokenArgs {
            idempotency_token: Some("mine".into()),
        };
        assert_eq!(given.token(), "mine");
        let fresh = TokenArgs::default();
        let (a, b) = (fresh.token(), fresh.token());
        assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn pauses_double_and_honour_retry_info_within_a_bound() {
        let plain = tonic::Status::unavailable("down");
        assert_eq!(pause(1, &plain), Duration::from_millis(250));
        assert_eq!(pause(2, &plain), Duration::from_millis(500));
        assert_eq!(pause(3, &plain), Duration::from_secs(1));
        let asked = tonic::Status::with_error_details(
            Code::Aborted,
            "busy",
            tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_secs(2))),
        );
        assert_eq!(pause(1, &asked), Duration::from_secs(2));
        let too_long = tonic::Status::with_error_details(
            Code::Unavailable,
            "busy",
            tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_secs(60))),
        );
        assert_eq!(pause(1, &too_long), MAX_PAUSE);
    }

    #[tokio::test]
    async fn only_retryable_failures_are_retried_and_only_so_often() {
        let calls = AtomicU32::new(0);
        let outcome: Result<(), _> = retried(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(tonic::Status::invalid_argument("bad")) }
        })
        .await;
        assert_eq!(outcome.unwrap_err().code(), Code::InvalidArgument);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        calls.store(0, Ordering::SeqCst);
        let outcome = retried(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(tonic::Status::unavailable("down"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(outcome.unwrap(), 2);

        calls.store(0, Ordering::SeqCst);
        let outcome: Result<(), _> = retried(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(tonic::Status::deadline_exceeded("slow")) }
        })
        .await;
        assert_eq!(outcome.unwrap_err().code(), Code::DeadlineExceeded);
        assert_eq!(calls.load(Ordering::SeqCst), MAX_ATTEMPTS);
    }
}
