//! Moving in: copying an embedded store's keys into PostgreSQL
//! (`kmsd migrate-store`).
//!
//! Records are copied as they are (material stays sealed under the same root key), one
//! transaction per key with its versions and aliases, so an interrupted copy leaves
//! whole keys only, and running it again copies what is missing. The HTTPS gateway's
//! client keys (public keys only) and the secrets (their data sealed under the copied
//! master keys) are copied after the keys, by the same rules. Before anything is
//! written, every key already in the target must be exactly the source's (same record,
//! versions and aliases): a target holding other keys, or keys changed since (by
//! replicas serving it), is refused untouched.

use sqlx::PgConnection;

use super::errors::sql;
use super::{KEY_COLUMNS, PgStore, bind_alias, bind_key, insert_alias_statement, insert_version};
use crate::store::{
    AliasRecord, ClientKeyRecord, KeyRecord, KeyStore, SecretRecord, StoreError, StoreResult,
    VersionRecord,
};

/// Keys read per page from either store.
const PAGE: usize = 256;

/// What a copy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Keys copied now.
    pub keys_copied: u64,
    /// Keys the target already held, identical.
    pub keys_present: u64,
    /// Versions copied now.
    pub versions_copied: u64,
    /// Aliases copied now.
    pub aliases_copied: u64,
    /// Client keys of the HTTPS gateway copied now.
    pub client_keys_copied: u64,
    /// Secrets copied now.
    pub secrets_copied: u64,
}

/// Why a copy was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The target holds a key the source does not, or holds it differently.
    #[error(
        "the target database already holds key {key_id}, {how}: it holds other keys than \
         this store, and nothing was copied"
    )]
    TargetDiffers {
        /// The key.
        key_id: String,
        /// How it differs.
        how: &'static str,
    },
    /// A store failed.
    #[error("{}", .0.chain())]
    Store(#[from] StoreError),
}

/// A key with everything that belongs to it.
#[derive(Debug, PartialEq, Eq)]
struct WholeKey {
    key: KeyRecord,
    versions: Vec<VersionRecord>,
    aliases: Vec<AliasRecord>,
}

async fn whole_key(store: &dyn KeyStore, key: KeyRecord) -> StoreResult<WholeKey> {
    let versions = store.list_versions(&key.key_id).await?;
    let aliases = store
        .list_aliases(Some(&key.key_id), None, usize::MAX)
        .await?;
    Ok(WholeKey {
        key,
        versions,
        aliases,
    })
}

/// How far a listing in pages of [`PAGE`] has got.
#[derive(Default)]
struct Pages {
    /// The ID the next page starts after; `None` at the start.
    after: Option<String>,
}

impl Pages {
    /// Where the next page starts, for `list_keys` or `list_client_keys`.
    fn after(&self) -> Option<&str> {
        self.after.as_deref()
    }

    /// `listed`, the next page, with where the one after it starts noted (its last
    /// ID); `None` once a page is empty: the listing is over.
    fn next<T: Listed>(&mut self, listed: Vec<T>) -> Option<Vec<T>> {
        self.after = Some(listed.last()?.id().to_owned());
        Some(listed)
    }
}

/// A record listed in [`Pages`], by ID.
trait Listed {
    fn id(&self) -> &str;
}

impl Listed for KeyRecord {
    fn id(&self) -> &str {
        &self.key_id
    }
}

impl Listed for SecretRecord {
    fn id(&self) -> &str {
        &self.secret_name
    }
}

impl Listed for ClientKeyRecord {
    fn id(&self) -> &str {
        &self.client_key_id
    }
}

/// Copies every key of `source` that `target` lacks; see the module docs.
pub async fn import(source: &dyn KeyStore, target: &PgStore) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    // First the check, writing nothing: the target's keys must all be the source's.
    let mut pages = Pages::default();
    while let Some(keys) = pages.next(target.list_keys(pages.after(), PAGE).await?) {
        for key in keys {
            let key_id = key.key_id.clone();
            let Some(ours) = source.get_key(&key_id).await? else {
                return Err(ImportError::TargetDiffers {
                    key_id,
                    how: "which this store does not hold",
                });
            };
            if whole_key(target, key).await? != whole_key(source, ours).await? {
                return Err(ImportError::TargetDiffers {
                    key_id,
                    how: "not as this store holds it (changed since it was copied?)",
                });
            }
            report.keys_present += 1;
        }
    }
    let mut pages = Pages::default();
    while let Some(client_keys) = pages.next(target.list_client_keys(pages.after(), PAGE).await?) {
        for theirs in client_keys {
            if source.get_client_key(&theirs.client_key_id).await?.as_ref() != Some(&theirs) {
                return Err(ImportError::TargetDiffers {
                    key_id: theirs.client_key_id,
                    how: "a client key this store does not hold",
                });
            }
        }
    }
    let mut pages = Pages::default();
    while let Some(keys) = pages.next(source.list_keys(pages.after(), PAGE).await?) {
        for key in keys {
            if target.get_key(&key.key_id).await?.is_some() {
                continue;
            }
            let whole = whole_key(source, key).await?;
            insert_whole(target, &whole).await?;
            report.keys_copied += 1;
            report.versions_copied += whole.versions.len() as u64;
            report.aliases_copied += whole.aliases.len() as u64;
        }
    }
    let mut pages = Pages::default();
    while let Some(client_keys) = pages.next(source.list_client_keys(pages.after(), PAGE).await?) {
        for client_key in client_keys {
            if target
                .get_client_key(&client_key.client_key_id)
                .await?
                .is_none()
            {
                target.insert_client_key(&client_key).await?;
                report.client_keys_copied += 1;
            }
        }
    }
    let mut pages = Pages::default();
    while let Some(secrets) = pages.next(source.list_secrets(pages.after(), PAGE).await?) {
        for secret in secrets {
            if target.get_secret(&secret.secret_name).await?.is_none() {
                target.insert_secret(&secret).await?;
                report.secrets_copied += 1;
            }
        }
    }
    Ok(report)
}

/// Inserts a key, its versions and its aliases in one transaction.
async fn insert_whole(target: &PgStore, whole: &WholeKey) -> StoreResult<()> {
    let mut tx = target.pool.begin().await.map_err(sql("beginning"))?;
    insert_whole_in(&mut tx, whole).await?;
    tx.commit().await.map_err(sql("committing"))
}

async fn insert_whole_in(conn: &mut PgConnection, whole: &WholeKey) -> StoreResult<()> {
    let insert = format!(
        "INSERT INTO kmsd_keys ({KEY_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    );
    bind_key(sqlx::query(&insert), &whole.key)?
        .execute(&mut *conn)
        .await
        .map_err(sql("copying a key"))?;
    for version in &whole.versions {
        insert_version(&mut *conn, version).await?;
    }
    let insert = insert_alias_statement();
    for alias in &whole.aliases {
        bind_alias(sqlx::query(&insert), alias)?
            .execute(&mut *conn)
            .await
            .map_err(|err| StoreError::backend("copying an alias", err))?;
    }
    Ok(())
}
