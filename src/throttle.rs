//! The per-instance limit of the key pair operations.
//!
//! The public API processes one GenerateDataKeyPair-family call at a time per instance
//! and rejects extra concurrent calls at once with `Rejected.Throttling`, "Concurrency
//! Limit Exceeded." (reference section 1). [`KeyPairThrottle::admit`] decides that for
//! any transport: operations the catalogue marks as key pair limited
//! ([`Operation::is_key_pair_limited`]) share one semaphore; a call over the limit is
//! refused at once, never queued. The admitted call holds its [`KeyPairPermit`] for as
//! long as it counts; dropping the permit (however the call ends) releases it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::KmsError;
use crate::metrics;
use kmsd_api::ops::Operation;

/// The limit of the public API: one key pair call at a time per instance.
pub const DEFAULT_KEYPAIR_CONCURRENCY: usize = 1;

/// A concurrency limit the throttle cannot enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ThrottleLimitError {
    /// A limit of 0 would reject every key pair call.
    #[error("the key pair concurrency limit must be at least 1")]
    Zero,
    /// More permits than a tokio semaphore can hold.
    #[error("the key pair concurrency limit must be at most {max}, got {0}", max = Semaphore::MAX_PERMITS)]
    TooLarge(usize),
}

// === impl ThrottleStats ===

/// The throttle's live numbers; the metrics hold the `Arc` (registered as a
/// [`Collector`]) for the life of the server.
#[derive(Debug)]
pub struct ThrottleStats {
    limit: usize,
    permits: Arc<Semaphore>,
    rejected: AtomicU64,
}

impl ThrottleStats {
    /// The configured limit (`--keypair-concurrency`).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Key pair calls admitted and not yet complete. Read from the semaphore itself, so
    /// it cannot drift from what the throttle enforces.
    pub fn in_flight(&self) -> usize {
        self.limit.saturating_sub(self.permits.available_permits())
    }

    /// Key pair calls rejected since the server started.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

/// Read at each scrape: rejections, calls in flight and the limit.
impl Collector for ThrottleStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        metrics::encode_counter(
            &mut encoder,
            "throttle_rejections",
            "Data key pair calls rejected with Rejected.Throttling",
            self.rejected_total(),
        )?;
        metrics::encode_gauge(
            &mut encoder,
            "keypair_calls_in_flight",
            "Data key pair calls being served",
            metrics::saturating_i64(self.in_flight()),
        )?;
        metrics::encode_gauge(
            &mut encoder,
            "keypair_concurrency_limit",
            "The --keypair-concurrency limit",
            metrics::saturating_i64(self.limit()),
        )
    }
}

// === impl KeyPairThrottle ===

/// The per-instance key pair limit. Cheap to clone; clones share the limit.
#[derive(Clone, Debug)]
pub struct KeyPairThrottle {
    stats: Arc<ThrottleStats>,
}

/// An admitted key pair call's place; dropping it frees the place.
#[derive(Debug)]
pub struct KeyPairPermit(#[allow(dead_code)] OwnedSemaphorePermit);

impl KeyPairThrottle {
    /// A throttle admitting `limit` concurrent key pair calls.
    ///
    /// # Errors
    ///
    /// [`ThrottleLimitError::Zero`] for 0, [`ThrottleLimitError::TooLarge`] above
    /// [`Semaphore::MAX_PERMITS`].
    pub fn new(limit: usize) -> Result<Self, ThrottleLimitError> {
        if limit == 0 {
            return Err(ThrottleLimitError::Zero);
        }
        if limit > Semaphore::MAX_PERMITS {
            return Err(ThrottleLimitError::TooLarge(limit));
        }
        Ok(Self {
            stats: Arc::new(ThrottleStats {
                limit,
                permits: Arc::new(Semaphore::new(limit)),
                rejected: AtomicU64::new(0),
            }),
        })
    }

    /// The live numbers of this throttle.
    pub fn stats(&self) -> Arc<ThrottleStats> {
        Arc::clone(&self.stats)
    }

    /// Admits a call of `operation`, never waiting: `Ok(None)` for an operation outside
    /// the limit, `Ok(Some(permit))` for an admitted key pair call, and
    /// [`KmsError::Throttled`] (counted) when the limit is reached.
    pub fn admit(&self, operation: Operation) -> Result<Option<KeyPairPermit>, KmsError> {
        if !operation.is_key_pair_limited() {
            return Ok(None);
        }
        match Arc::clone(&self.stats.permits).try_acquire_owned() {
            Ok(permit) => Ok(Some(KeyPairPermit(permit))),
            Err(_) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                Err(KmsError::Throttled)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_or_huge_limit_is_refused() {
        assert_eq!(
            KeyPairThrottle::new(0).unwrap_err(),
            ThrottleLimitError::Zero
        );
        assert_eq!(
            KeyPairThrottle::new(usize::MAX).unwrap_err(),
            ThrottleLimitError::TooLarge(usize::MAX)
        );
        assert_eq!(KeyPairThrottle::new(1).unwrap().stats().limit(), 1);
    }

    #[test]
    fn the_key_pair_operations_share_one_limit_and_others_pass() {
        let throttle = KeyPairThrottle::new(1).unwrap();
        let stats = throttle.stats();
        let held = throttle
            .admit(Operation::AdvanceGenerateDataKeyPair)
            .unwrap();
        assert!(held.is_some());
        assert_eq!(stats.in_flight(), 1);
        for op in Operation::ALL {
            let admitted = throttle.admit(*op);
            if op.is_key_pair_limited() {
                assert!(matches!(admitted, Err(KmsError::Throttled)), "{op}");
            } else {
                assert!(matches!(admitted, Ok(None)), "{op}");
            }
        }
        assert_eq!(stats.rejected_total(), 4);
        assert_eq!(stats.in_flight(), 1, "rejections take no permit");
        drop(held);
        assert_eq!(stats.in_flight(), 0);
        assert!(
            throttle
                .admit(Operation::GenerateDataKeyPair)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn clones_share_the_limit() {
        let throttle = KeyPairThrottle::new(2).unwrap();
        let other = throttle.clone();
        let _a = throttle.admit(Operation::GenerateDataKeyPair).unwrap();
        let _b = other.admit(Operation::GenerateDataKeyPair).unwrap();
        assert!(throttle.admit(Operation::GenerateDataKeyPair).is_err());
        assert_eq!(other.stats().rejected_total(), 1);
    }
}
