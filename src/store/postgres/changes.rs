//! Listening for changes other replicas commit (`LISTEN kmsd_changes`).
//!
//! The triggers of migrations 0001 and 0005 announce every committed change to a key,
//! an alias or a secret; one task per store receives the announcements on a connection of its own
//! and hands them to every watcher (the registry's cache) as [`StoreChange`]s. When the
//! connection is lost, announcements made meanwhile are lost with it: the task says
//! [`StoreChange::Missed`] (forget everything cached), reconnects, and listens again.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;

use super::errors::sql;
use crate::store::{StoreChange, StoreResult};

/// The channel the triggers notify.
pub(super) const CHANNEL: &str = "kmsd_changes";

/// Changes buffered per watcher before it lags (and is told [`StoreChange::Missed`]).
pub(super) const BUFFER: usize = 1024;

/// Pause between attempts to get the listening connection back.
const RECONNECT_DELAY: Duration = Duration::from_millis(250);

/// The change a trigger's payload announces; `None` for a payload this build does not
/// know (a newer kmsd's), which concerns nothing cached here.
pub(super) fn parse(payload: &str) -> Option<StoreChange> {
    let (kind, name) = payload.split_once(':')?;
    let name = name.to_owned();
    match kind {
        "key" => Some(StoreChange::Key(name)),
        "destroyed" => Some(StoreChange::KeyDestroyed(name)),
        "alias" => Some(StoreChange::Alias(name)),
        "secret" => Some(StoreChange::Secret(name)),
        _ => None,
    }
}

/// Starts listening on a connection of `pool` (fails if none can be had), then hands
/// what arrives to `changes` until the task is aborted.
pub(super) async fn listen(
    pool: &PgPool,
    changes: broadcast::Sender<StoreChange>,
) -> StoreResult<tokio::task::JoinHandle<()>> {
    let mut listener = PgListener::connect_with(pool)
        .await
        .map_err(sql("connecting to listen for changes"))?;
    listener
        .listen(CHANNEL)
        .await
        .map_err(sql("listening for changes"))?;
    Ok(tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    if let Some(change) = parse(notification.payload()) {
                        let _ = changes.send(change);
                    }
                }
                // The connection was lost (and is back): what was announced meanwhile
                // is unknown.
                Ok(None) => {
                    tracing::warn!("the change listener lost its connection; reconnected");
                    let _ = changes.send(StoreChange::Missed);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "the change listener cannot reach the database; retrying");
                    let _ = changes.send(StoreChange::Missed);
                    tokio::time::sleep(RECONNECT_DELAY).await;
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_what_changed() {
        assert_eq!(parse("key:key-a"), Some(StoreChange::Key("key-a".into())));
        assert_eq!(
            parse("destroyed:key-a"),
            Some(StoreChange::KeyDestroyed("key-a".into()))
        );
        assert_eq!(
            parse("alias:alias/x:y"),
            Some(StoreChange::Alias("alias/x:y".into()))
        );
        assert_eq!(parse("client:abc"), None);
        assert_eq!(parse("garbage"), None);
    }
}
