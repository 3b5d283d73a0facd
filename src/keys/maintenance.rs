//! The maintenance task: automatic rotation and the end of deletion windows.
//!
//! It runs one pass at startup (so rotations and deletions that fell due while the
//! server was down happen at once) and then every `interval`. Time comes from the
//! registry's clock, so tests move a manual clock and shorten the interval instead of
//! sleeping for days.

use std::time::Duration;

use tokio::sync::watch;

use crate::error::KmsError;
use crate::store::{KeyState, StoreError};

use super::model::next_rotation_ms;
use super::registry::{KeyRegistry, store_error};

/// Used by the rotation scheduler to space its passes.
pub const DEFAULT_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// How many keys one store read of a pass lists.
const KEY_BATCH: usize = 256;

/// What one maintenance pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Keys automatically rotated.
    pub rotated: u64,
    /// Keys destroyed at the end of their deletion window.
    pub destroyed: u64,
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
        Ok(report)
    }
}

// === the background task ===

/// Observers of finished passes (metrics, tests).
pub type PassCounter = watch::Receiver<(u64, MaintenanceReport)>;

/// Spawns the maintenance loop. It stops when `shutdown` turns true. The returned
/// receiver reports the number of passes done and the totals so far.
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
            match registry.run_maintenance().await {
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
