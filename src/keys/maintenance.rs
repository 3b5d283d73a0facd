//! The maintenance task: automatic rotation, the end of deletion windows, and the
//! purge of expired idempotency tokens.
//!
//! It runs one pass at startup (so rotations and deletions that fell due while the
//! server was down happen at once) and then every `interval`. With replicas sharing a
//! store, each pass first takes the store's maintenance lease
//! ([`crate::store::KeyStore::try_lease_maintenance`]): one replica at a time passes,
//! the others skip that tick (the revision checks would keep them from rotating a key
//! twice anyway; the lease keeps them from all trying). Time comes from the
//! registry's clock, so tests move a manual clock and shorten the interval instead of
//! sleeping for days.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use tokio::sync::watch;

use crate::error::KmsError;
use crate::metrics;
use crate::store::{KeyState, MaintenanceLease, StoreError};

use super::model::next_rotation_ms;
use super::registry::{KeyRegistry, store_error};

/// How many keys one store read of a pass lists.
const KEY_BATCH: usize = 256;

/// What one maintenance pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Keys automatically rotated.
    pub rotated: u64,
    /// Keys destroyed at the end of their deletion window.
    pub destroyed: u64,
    /// Secrets deleted at the end of their recovery window.
    pub secrets_deleted: u64,
    /// Idempotency tokens purged at the end of their window.
    pub tokens_purged: u64,
}

// === impl KeyRegistry ===

impl KeyRegistry {
    /// Rotates every enabled key whose rotation is due (once, however overdue: a key
    /// that fell due while the server was down rotates once on the next pass) and
    /// destroys every key whose deletion window has ended.
    pub async fn run_maintenance(&self) -> Result<MaintenanceReport, KmsError> {
        let mut report = MaintenanceReport::default();
        let mut after: Option<String> = None;
        loop {
            let keys = self
                .store
                .list_keys(after.as_deref(), KEY_BATCH)
                .await
                .map_err(store_error)?;
            let Some(last) = keys.last() else { break };
            after = Some(last.key_id.clone());
            for key in keys {
                let now = self.now_ms();
                match (key.state, key.rotation_interval_secs, key.delete_at_ms) {
                    (KeyState::PendingDeletion, _, Some(delete_at)) if delete_at <= now => {
                        // Only the revision we saw: a deletion cancelled meanwhile wins.
                        match self.store.destroy_key(&key.key_id, key.revision).await {
                            Ok(true) => {
                                self.cache.clear_keys();
                                self.cache.forget_material(&key.key_id);
                                tracing::info!(key_id = %key.key_id, "key destroyed: deletion window ended");
                                report.destroyed += 1;
                            }
                            Ok(false) | Err(StoreError::Conflict) => {}
                            Err(err) => return Err(store_error(err)),
                        }
                    }
                    (KeyState::Enabled, Some(interval), _)
                        if next_rotation_ms(key.last_rotation_ms, interval) <= now =>
                    {
                        match self.rotate(key).await {
                            Ok(Some(_)) => report.rotated += 1,
                            // Changed or destroyed under us: the next pass decides.
                            Ok(None) | Err(KmsError::KeyNotFound(_)) => {}
                            Err(err) => return Err(err),
                        }
                    }
                    _ => {}
                }
            }
        }
        report.secrets_deleted = self.delete_due_secrets().await?;
        report.tokens_purged = self.purge_idempotency().await?;
        Ok(report)
    }

    /// Deletes every secret whose recovery window has ended; returns how many.
    async fn delete_due_secrets(&self) -> Result<u64, KmsError> {
        let mut deleted = 0;
        let mut after: Option<String> = None;
        loop {
            let secrets = self
                .store
                .list_secrets(after.as_deref(), KEY_BATCH)
                .await
                .map_err(store_error)?;
            let Some(last) = secrets.last() else { break };
            after = Some(last.secret_name.clone());
            for secret in secrets {
                if secret.delete_at_ms.is_none_or(|at| at > self.now_ms()) {
                    continue;
                }
                // Only the revision we saw: a restore meanwhile wins.
                match self
                    .store
                    .delete_secret(&secret.secret_name, secret.revision)
                    .await
                {
                    Ok(true) => {
                        self.cache.forget_secret(&secret.secret_name);
                        tracing::info!(secret_name = %secret.secret_name, "secret deleted: recovery window ended");
                        deleted += 1;
                    }
                    Ok(false) | Err(StoreError::Conflict) => {}
                    Err(err) => return Err(store_error(err)),
                }
            }
        }
        Ok(deleted)
    }
}

impl KeyRegistry {
    /// The right to run one maintenance pass, if no other replica holds it now.
    pub async fn lease_maintenance(&self) -> Result<Option<MaintenanceLease>, KmsError> {
        self.store
            .try_lease_maintenance()
            .await
            .map_err(store_error)
    }
}

// === the background task ===

/// Observers of finished passes (metrics, tests).
pub type PassCounter = watch::Receiver<(u64, MaintenanceReport)>;

/// The passes and their totals as metrics, read at each scrape.
#[derive(Debug)]
pub struct PassMetrics(pub PassCounter);

impl Collector for PassMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (passes, totals) = *self.0.borrow();
        metrics::encode_counter(
            &mut encoder,
            "automatic_rotations",
            "Keys rotated by their rotation policy",
            totals.rotated,
        )?;
        metrics::encode_counter(
            &mut encoder,
            "keys_destroyed",
            "Keys destroyed at the end of their deletion window",
            totals.destroyed,
        )?;
        metrics::encode_counter(
            &mut encoder,
            "maintenance_passes",
            "Passes of the rotation and deletion task",
            passes,
        )
    }
}

/// Spawns the maintenance loop. It stops when `shutdown` turns true. The returned
/// receiver reports the number of passes done and the totals so far; a tick skipped
/// because another replica held the lease counts as a pass that did nothing.
pub fn spawn(
    registry: KeyRegistry,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> (tokio::task::JoinHandle<()>, PassCounter) {
    let (report_tx, report_rx) = watch::channel((0, MaintenanceReport::default()));
    let handle = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut passes = 0u64;
        let mut totals = MaintenanceReport::default();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            let outcome = match registry.lease_maintenance().await {
                Ok(Some(lease)) => {
                    let outcome = registry.run_maintenance().await;
                    drop(lease);
                    outcome
                }
                Ok(None) => {
                    tracing::debug!("maintenance pass skipped: another replica holds the lease");
                    Ok(MaintenanceReport::default())
                }
                Err(err) => Err(err),
            };
            match outcome {
                Ok(report) => {
                    if report != MaintenanceReport::default() {
                        tracing::info!(
                            rotated = report.rotated,
                            destroyed = report.destroyed,
                            "maintenance pass"
                        );
                    }
                    totals.rotated += report.rotated;
                    totals.destroyed += report.destroyed;
                }
                Err(err) => tracing::error!(error = %err, "maintenance pass failed"),
            }
            passes += 1;
            report_tx.send_replace((passes, totals));
        }
    });
    (handle, report_rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::model::{CreateKeyParams, PageRequest, RotationRequest};
    use crate::keys::testing::{Fixture, create};

    const DAY: Duration = Duration::from_secs(86_400);

    fn report(rotated: u64, destroyed: u64) -> MaintenanceReport {
        MaintenanceReport {
            rotated,
            destroyed,
            secrets_deleted: 0,
            tokens_purged: 0,
        }
    }

    async fn version_count(registry: &KeyRegistry, key: &str) -> usize {
        registry
            .list_key_versions(key, &PageRequest::default())
            .await
            .unwrap()
            .items
            .len()
    }

    #[tokio::test]
    async fn due_keys_rotate_once_however_overdue() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let weekly = registry
            .create_key(CreateKeyParams {
                rotation: RotationRequest {
                    enabled: true,
                    interval: Some(7 * DAY),
                },
                ..Default::default()
            })
            .await
            .unwrap()
            .key_id;
        let manual = create(registry).await;
        assert_eq!(registry.run_maintenance().await.unwrap(), report(0, 0));
        fixture.clock.advance(7 * DAY - Duration::from_secs(1));
        assert_eq!(registry.run_maintenance().await.unwrap(), report(0, 0));
        // Four intervals overdue (the server was down): one rotation, not four.
        fixture.clock.advance(4 * 7 * DAY);
        assert_eq!(registry.run_maintenance().await.unwrap(), report(1, 0));
        assert_eq!(registry.run_maintenance().await.unwrap(), report(0, 0));
        assert_eq!(version_count(registry, &weekly).await, 2);
        assert_eq!(version_count(registry, &manual).await, 1);
        let rotated = registry.describe_key(&weekly).await.unwrap();
        assert_ne!(rotated.primary_key_version, rotated.initial_key_version);
        // The next one is an interval after that rotation; disabled keys wait.
        fixture.clock.advance(7 * DAY);
        assert_eq!(registry.run_maintenance().await.unwrap(), report(1, 0));
        registry.disable_key(&weekly).await.unwrap();
        fixture.clock.advance(7 * DAY);
        assert_eq!(registry.run_maintenance().await.unwrap(), report(0, 0));
        assert_eq!(version_count(registry, &weekly).await, 3);
    }

    #[tokio::test]
    async fn keys_are_destroyed_when_their_window_ends_unless_cancelled() {
        let fixture = Fixture::new().await;
        let registry = &fixture.registry;
        let doomed = create(registry).await;
        registry
            .create_alias(&doomed, "alias/doomed")
            .await
            .unwrap();
        registry.schedule_key_deletion(&doomed, 7).await.unwrap();
        let reprieved = create(registry).await;
        registry.schedule_key_deletion(&reprieved, 7).await.unwrap();
        registry.cancel_key_deletion(&reprieved).await.unwrap();
        let later = create(registry).await;
        fixture.clock.advance(DAY);
        registry.schedule_key_deletion(&later, 7).await.unwrap();

        fixture.clock.advance(6 * DAY - Duration::from_secs(1));
        assert_eq!(registry.run_maintenance().await.unwrap(), report(0, 0));
        fixture.clock.advance(Duration::from_secs(1));
        assert_eq!(registry.run_maintenance().await.unwrap(), report(0, 1));
        assert!(matches!(
            registry.describe_key(&doomed).await,
            Err(KmsError::KeyNotFound(_))
        ));
        assert!(matches!(
            registry.resolve("alias/doomed").await,
            Err(KmsError::AliasNotFound(_))
        ));
        assert_eq!(
            registry.describe_key(&reprieved).await.unwrap().key_state,
            KeyState::Enabled
        );
        assert_eq!(
            registry.describe_key(&later).await.unwrap().key_state,
            KeyState::PendingDeletion
        );
        fixture.clock.advance(DAY);
        assert_eq!(registry.run_maintenance().await.unwrap(), report(0, 1));
        let counts = registry.counts().await.unwrap();
        assert_eq!((counts.keys, counts.versions, counts.aliases), (1, 1, 0));
    }
}
