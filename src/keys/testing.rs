//! Fixtures for the registry's unit tests: a registry over a redb store in a
//! temporary directory, a manual clock, and principals with chosen key grants.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tempfile::TempDir;

use crate::auth::{Access, AuthPolicy};
use crate::clock::ManualClock;
use crate::crypto::secret::MasterKeyMaterial;
use crate::store::StoreSettings;

use super::model::CreateKeyParams;
use super::{KeyRegistry, open_registry};

/// A registry over a fresh store. Fields drop in order: the registry (closing the
/// store) before the directory is removed.
pub(crate) struct Fixture {
    pub(crate) registry: KeyRegistry,
    pub(crate) clock: ManualClock,
    dir: TempDir,
}

impl Fixture {
    /// A registry over an empty store, at a fixed time, under [`Self::root_key`].
    pub(crate) async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let settings = StoreSettings::Embedded {
            data_dir: dir.path().to_owned(),
        };
        let registry = open_registry(&settings, Self::root_key(), Arc::new(clock.clone()))
            .await
            .unwrap();
        Self {
            registry,
            clock,
            dir,
        }
    }

    /// The root key every fixture's store is made with.
    pub(crate) fn root_key() -> MasterKeyMaterial {
        MasterKeyMaterial::from_bytes(&[7; 32]).unwrap()
    }

    /// Closes the store, keeping its directory and the clock.
    pub(crate) fn close(self) -> (TempDir, ManualClock) {
        drop(self.registry);
        (self.dir, self.clock)
    }
}

/// Creates a key with the default parameters; returns its ID.
pub(crate) async fn create(registry: &KeyRegistry) -> String {
    registry
        .create_key(CreateKeyParams::default())
        .await
        .unwrap()
        .key_id
}

/// The access of a principal granted every operation and exactly the key globs `keys`.
pub(crate) fn principal(keys: &[&str]) -> Access {
    let keys: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
    let text = format!(
        "[[principals]]\nname = \"tester\"\nspiffe_id = \"spiffe://test/tester\"\n\
         operations = [\"*\"]\nkeys = [{}]\n",
        keys.join(", ")
    );
    let policy = AuthPolicy::parse(&text, "test").unwrap();
    Access::Principal(Arc::clone(&policy.principals()[0]))
}
