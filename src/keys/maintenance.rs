//! The maintenance task: automatic rotation and the end of deletion windows.
//!
//! It runs one pass at startup (so rotations and deletions that fell due while the
//! server was down happen at once) and then every `interval`. Time comes from the
//! registry's clock, so tests move a manual clock and shorten the interval instead of
//! sleeping for days.

use std::time::Duration;

use tokio::sync::watch;

use super::registry::{KeyRegistry, MaintenanceReport};

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
