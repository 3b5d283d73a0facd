//! The embedded store: one redb file, `<data-dir>/kmsd.redb`.
//!
//! redb is a pure-Rust, ACID, copy-on-write B-tree store. Every write transaction
//! commits with `Durability::Immediate` (fsync before `commit` returns), so an
//! acknowledged change survives a SIGKILL or power loss. redb also locks the file, so
//! two servers cannot open one data directory. Records are JSON, one table per kind.
//! All calls run on tokio's blocking pool, never on the async workers.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableHandle, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use format::STORE_FORMAT;

mod format;

use super::{
    AliasRecord, BoxError, ClientKeyRecord, Creation, IdempotencyRecord, KeyRecord, KeyStore,
    Resealer, SecretRecord, StoreCounts, StoreError, StoreResult, VersionRecord,
};

const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
/// Keyed by `<key_id>/<version_id>`, so one key's versions are one range.
const VERSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("versions");
/// Version ID → key ID, for ciphertexts that name only the version.
const VERSION_OWNERS: TableDefinition<&str, &str> = TableDefinition::new("version_owners");
const ALIASES: TableDefinition<&str, &[u8]> = TableDefinition::new("aliases");
/// The aliases of each key, keyed by `<key_id>/<alias_name>` (key IDs hold no `/`), so
/// one key's aliases are one range: finding them costs the aliases of that key, not
/// every alias. Written in the same transactions as `ALIASES`.
const ALIASES_BY_KEY: TableDefinition<&str, ()> = TableDefinition::new("aliases_by_key");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Client keys of the HTTPS gateway by ID (JSON `ClientKeyRecord`s); added later, so
/// a store made before it gets it on open.
const CLIENT_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("client_keys");
/// Secrets by name (JSON `SecretRecord`s, their versions' data sealed); added later, so
/// a store made before it gets it on open.
const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
/// Idempotency tokens (JSON `IdempotencyRecord`s) by [`token_key`]; format 3.
const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");

/// The file name of the database inside the data directory.
pub const DB_FILE_NAME: &str = "kmsd.redb";

/// A [`KeyStore`] in a redb file.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

/// Turns a redb (or I/O, or JSON) error met while doing `context` into a
/// [`StoreError::Backend`] that keeps it as its source.
fn backend<E: Into<BoxError>>(context: &'static str) -> impl FnOnce(E) -> StoreError {
    move |err| StoreError::backend(context, err)
}

fn encode<T: Serialize>(record: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(record).map_err(backend("encoding a record"))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(backend("decoding a record (corrupt store?)"))
}

/// Runs blocking store work (redb's calls wait on the file and fsync) on tokio's
/// blocking pool, never on the async workers.
pub(super) async fn blocking<T, F>(work: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(backend("running a blocking store task"))?
}

/// Opens a table of a write transaction.
fn write_table<'txn, K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &'txn WriteTransaction,
    table: TableDefinition<K, V>,
) -> StoreResult<redb::Table<'txn, K, V>> {
    txn.open_table(table).map_err(backend("opening a table"))
}

/// Opens a table of a read transaction.
fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> StoreResult<redb::ReadOnlyTable<K, V>> {
    txn.open_table(table).map_err(backend("opening a table"))
}

/// A table of JSON records by name.
type RecordTable = TableDefinition<'static, &'static str, &'static [u8]>;

/// The record stored under `name` in `table`, if any.
fn get_record<T: DeserializeOwned>(
    txn: &ReadTransaction,
    table: RecordTable,
    name: &str,
) -> StoreResult<Option<T>> {
    let table = read_table(txn, table)?;
    let found = table.get(name).map_err(backend("reading"))?;
    found.map(|bytes| decode(bytes.value())).transpose()
}

fn version_key(key_id: &str, version_id: &str) -> String {
    format!("{key_id}/{version_id}")
}

/// The half-open range of `VERSIONS` keys that belong to `key_id`. Key IDs hold no
/// `/`, and `0` is the byte after `/`.
fn version_range(key_id: &str) -> (String, String) {
    (format!("{key_id}/"), format!("{key_id}0"))
}

/// An `ALIASES_BY_KEY` entry; its range per key is [`version_range`]'s.
fn alias_index_key(key_id: &str, alias_name: &str) -> String {
    format!("{key_id}/{alias_name}")
}

/// Records [`STORE_FORMAT`] as the store's format, in `txn`.
fn write_format(txn: &WriteTransaction) -> StoreResult<()> {
    write_table(txn, META)?
        .insert(
            format::FORMAT_ENTRY,
            format::encode(STORE_FORMAT).as_slice(),
        )
        .map_err(backend("writing"))?;
    Ok(())
}

impl RedbStore {
    /// Opens (or creates) the database in `data_dir`, which must exist. Fails if
    /// another process holds it open, or if the store's format is newer than this
    /// build's ([`format`]); migrates an older format in place, keeping a copy first.
    pub fn open(data_dir: &Path) -> StoreResult<Self> {
        let path = data_dir.join(DB_FILE_NAME);
        // The format is read before the file is opened for writing, which touches it:
        // a newer store is refused untouched, and an older one is copied as it was.
        // (A peek that fails, e.g. while another process holds the file, leaves the
        // refusal to the open below.)
        let mut kept = None;
        if path.exists()
            && let Ok(entry) = Self::peek_meta(data_dir, format::FORMAT_ENTRY)
        {
            let found = format::check(entry.as_deref())?;
            if found < STORE_FORMAT {
                kept = Some(format::keep_copy(&path, found)?);
            }
        }
        let db = Database::create(&path).map_err(backend("opening the database"))?;
        let store = Self { db: Arc::new(db) };
        if store.tables_exist()? {
            // Opening an existing store of this build's format writes nothing, so a
            // refused start (e.g. a wrong root key) leaves the files as they were.
            let found = format::check(read_meta(&*store.db, format::FORMAT_ENTRY)?.as_deref())?;
            if found < STORE_FORMAT {
                let kept = match kept {
                    Some(kept) => kept,
                    None => format::keep_copy(&path, found)?,
                };
                store.write_now(|txn| Self::upgrade(txn, found))?;
                tracing::info!(
                    from = found,
                    to = STORE_FORMAT,
                    kept = %kept.display(),
                    "migrated the store's format; the store as it was is kept beside it"
                );
            }
            return Ok(store);
        }
        // An empty file, not a store: nothing was worth keeping.
        if let Some(kept) = kept {
            let _ = std::fs::remove_file(kept);
        }
        // Create every table up front so readers never meet a missing one.
        store.write_now(|txn| {
            write_table(txn, KEYS)?;
            write_table(txn, VERSIONS)?;
            write_table(txn, VERSION_OWNERS)?;
            write_table(txn, ALIASES)?;
            write_table(txn, ALIASES_BY_KEY)?;
            write_table(txn, CLIENT_KEYS)?;
            write_table(txn, SECRETS)?;
            write_table(txn, IDEMPOTENCY)?;
            write_format(txn)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Brings a store of format `from` to [`STORE_FORMAT`], step by step, in `txn`.
    fn upgrade(txn: &WriteTransaction, from: u32) -> StoreResult<()> {
        let has_table = |name: &str| -> StoreResult<bool> {
            Ok(txn
                .list_tables()
                .map_err(backend("reading"))?
                .any(|handle| handle.name() == name))
        };
        if from < 1 {
            // Format 0 (no recorded format): stores made before the alias index or
            // the client keys may lack them.
            if !has_table(ALIASES_BY_KEY.name())? {
                build_alias_index(txn)?;
            }
            write_table(txn, CLIENT_KEYS)?;
        }
        if from < 2 {
            // Format 2: secrets. A format-1 binary would not reseal them when it
            // rotates the root key, so it must not open a store that may hold them.
            write_table(txn, SECRETS)?;
        }
        if from < 3 {
            // Format 3: idempotency tokens. An older binary would create without
            // looking at them, so a retried creation could make a second object.
            write_table(txn, IDEMPOTENCY)?;
        }
        write_format(txn)?;
        Ok(())
    }

    /// Reads one metadata value without opening the database for writing (which
    /// would touch the file): `None` if there is no database or no such value. Lets
    /// startup checks (the root key) run before anything can change on disk.
    pub fn peek_meta(data_dir: &Path, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let path = data_dir.join(DB_FILE_NAME);
        if !path.exists() {
            return Ok(None);
        }
        match redb::ReadOnlyDatabase::open(&path) {
            Ok(db) => read_meta(&db, name),
            // After a crash the file needs recovery, which a read-only open refuses to
            // do. Recover a private copy instead, so the real file stays untouched
            // until the caller decides to open it for real.
            Err(redb::DatabaseError::RepairAborted) => {
                let copy = tempfile::NamedTempFile::new()
                    .map_err(backend("creating a private copy of the database"))?;
                std::fs::copy(&path, copy.path())
                    .map_err(backend("creating a private copy of the database"))?;
                let db = Database::create(copy.path()).map_err(backend("opening the database"))?;
                read_meta(&db, name)
            }
            Err(err) => Err(StoreError::backend("opening the database read-only", err)),
        }
    }

    /// Compacts the database in `data_dir` (no other process may hold it): redb moves
    /// live pages to the front and truncates the file, so freed pages past the new end
    /// are gone. Returns the file size before and after.
    pub fn compact_file(data_dir: &Path) -> StoreResult<(u64, u64)> {
        let path = data_dir.join(DB_FILE_NAME);
        let size = |context| {
            std::fs::metadata(&path)
                .map(|m| m.len())
                .map_err(backend(context))
        };
        let before = size("reading the database size")?;
        let mut db = Database::open(&path).map_err(backend("opening the database"))?;
        while db.compact().map_err(backend("compacting"))? {}
        drop(db);
        Ok((before, size("reading the database size")?))
    }

    /// Whether the tables of a store exist (the alias index, added later, aside).
    fn tables_exist(&self) -> StoreResult<bool> {
        let txn = self
            .db
            .begin_read()
            .map_err(backend("beginning a transaction"))?;
        let tables: Vec<String> = txn
            .list_tables()
            .map_err(backend("reading"))?
            .map(|handle| handle.name().to_owned())
            .collect();
        Ok([
            KEYS.name(),
            VERSIONS.name(),
            VERSION_OWNERS.name(),
            ALIASES.name(),
            META.name(),
        ]
        .iter()
        .all(|name| tables.iter().any(|t| t == name)))
    }

    /// Runs `work` in a durable write transaction on the calling thread.
    fn write_now<T>(
        &self,
        work: impl FnOnce(&WriteTransaction) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(backend("beginning a transaction"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(backend("beginning a transaction"))?;
        let out = work(&txn)?;
        txn.commit().map_err(backend("committing"))?;
        Ok(out)
    }

    /// Runs `work` in a durable write transaction on the blocking pool. An error from
    /// `work` drops the transaction, which aborts it.
    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    {
        let store = self.clone();
        blocking(move || store.write_now(work)).await
    }

    /// The record stored under `name` in `table`, if any, read in a transaction of its
    /// own.
    async fn get<T>(&self, table: RecordTable, name: String) -> StoreResult<Option<T>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.read(move |txn| get_record(txn, table, &name)).await
    }

    /// Runs `work` in a read transaction on the blocking pool.
    async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> StoreResult<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        blocking(move || {
            let txn = db
                .begin_read()
                .map_err(backend("beginning a transaction"))?;
            work(&txn)
        })
        .await
    }
}

/// Copies every table as `from` (one read transaction: one moment) sees it into a new
/// database at `path`, committed durably. Writers go on meanwhile; redb's
/// copy-on-write keeps the pages of `from` until it ends. A table added to the store
/// must be added here: a test compares the snapshot's tables with the store's.
fn write_snapshot(from: &ReadTransaction, path: &Path) -> StoreResult<()> {
    let snapshot = Database::create(path).map_err(backend("creating the snapshot"))?;
    let mut txn = snapshot
        .begin_write()
        .map_err(backend("writing the snapshot"))?;
    txn.set_durability(Durability::Immediate)
        .map_err(backend("writing the snapshot"))?;
    macro_rules! copy {
        ($table:expr) => {{
            let source = read_table(from, $table)?;
            let mut target = write_table(&txn, $table)?;
            for entry in source.iter().map_err(backend("reading"))? {
                let (name, value) = entry.map_err(backend("reading"))?;
                target
                    .insert(name.value(), value.value())
                    .map_err(backend("writing the snapshot"))?;
            }
        }};
    }
    copy!(KEYS);
    copy!(VERSIONS);
    copy!(VERSION_OWNERS);
    copy!(ALIASES);
    copy!(ALIASES_BY_KEY);
    copy!(META);
    copy!(CLIENT_KEYS);
    copy!(SECRETS);
    copy!(IDEMPOTENCY);
    txn.commit().map_err(backend("committing the snapshot"))?;
    Ok(())
}

/// One metadata value from a database opened any way.
fn read_meta(db: &impl ReadableDatabase, name: &str) -> StoreResult<Option<Vec<u8>>> {
    let txn = db
        .begin_read()
        .map_err(backend("beginning a transaction"))?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(err) => return Err(StoreError::backend("opening a table", err)),
    };
    let found = meta.get(name).map_err(backend("reading"))?;
    Ok(found.map(|bytes| bytes.value().to_vec()))
}

/// Up to `limit` records of `table` named strictly after `after` (from the first when
/// `None`), in name order: one page of a list call.
fn get_page<T: DeserializeOwned>(
    txn: &ReadTransaction,
    table: RecordTable,
    after: Option<&str>,
    limit: usize,
) -> StoreResult<Vec<T>> {
    let table = read_table(txn, table)?;
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    let range = table
        .range::<&str>((start, Bound::Unbounded))
        .map_err(backend("reading"))?;
    range
        .take(limit)
        .map(|entry| {
            let (_, bytes) = entry.map_err(backend("reading"))?;
            decode(bytes.value())
        })
        .collect()
}

/// Builds `ALIASES_BY_KEY` from `ALIASES`: a store made before the index.
fn build_alias_index(txn: &WriteTransaction) -> StoreResult<()> {
    let aliases = write_table(txn, ALIASES)?;
    let mut index = write_table(txn, ALIASES_BY_KEY)?;
    for entry in aliases.iter().map_err(backend("reading"))? {
        let (_, bytes) = entry.map_err(backend("reading"))?;
        let alias: AliasRecord = decode(bytes.value())?;
        index
            .insert(
                alias_index_key(&alias.key_id, &alias.alias_name).as_str(),
                (),
            )
            .map_err(backend("writing"))?;
    }
    Ok(())
}

/// Replaces a key after checking that the stored one is the revision before it.
fn replace_key(txn: &WriteTransaction, key: &KeyRecord) -> StoreResult<()> {
    let mut keys = write_table(txn, KEYS)?;
    let stored: KeyRecord = match keys.get(key.key_id.as_str()).map_err(backend("reading"))? {
        Some(bytes) => decode(bytes.value())?,
        None => return Err(StoreError::NotFound),
    };
    if stored.revision.checked_add(1) != Some(key.revision) {
        return Err(StoreError::Conflict);
    }
    keys.insert(key.key_id.as_str(), encode(key)?.as_slice())
        .map_err(backend("writing"))?;
    Ok(())
}

/// Stores a version and indexes it by its ID.
fn insert_version(txn: &WriteTransaction, version: &VersionRecord) -> StoreResult<()> {
    let mut versions = write_table(txn, VERSIONS)?;
    let name = version_key(&version.key_id, &version.version_id);
    versions
        .insert(name.as_str(), encode(version)?.as_slice())
        .map_err(backend("writing"))?;
    let mut owners = write_table(txn, VERSION_OWNERS)?;
    owners
        .insert(version.version_id.as_str(), version.key_id.as_str())
        .map_err(backend("writing"))?;
    Ok(())
}

/// Whether [`put_alias`] creates an alias or re-points one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AliasExpectation {
    /// The name must be free ([`StoreError::AlreadyExists`] otherwise).
    New,
    /// The alias must exist ([`StoreError::NotFound`] otherwise).
    Existing,
}

/// Writes an alias whose key must exist, after checking the name against `expect`.
fn put_alias(
    txn: &WriteTransaction,
    alias: &AliasRecord,
    expect: AliasExpectation,
) -> StoreResult<()> {
    if !key_exists(txn, &alias.key_id)? {
        return Err(StoreError::NotFound);
    }
    let mut aliases = write_table(txn, ALIASES)?;
    let existing: Option<AliasRecord> = aliases
        .get(alias.alias_name.as_str())
        .map_err(backend("reading"))?
        .map(|bytes| decode(bytes.value()))
        .transpose()?;
    match (expect, &existing) {
        (AliasExpectation::New, Some(_)) => return Err(StoreError::AlreadyExists),
        (AliasExpectation::Existing, None) => return Err(StoreError::NotFound),
        _ => {}
    }
    aliases
        .insert(alias.alias_name.as_str(), encode(alias)?.as_slice())
        .map_err(backend("writing"))?;
    let mut index = write_table(txn, ALIASES_BY_KEY)?;
    if let Some(old) = existing {
        index
            .remove(alias_index_key(&old.key_id, &old.alias_name).as_str())
            .map_err(backend("writing"))?;
    }
    index
        .insert(
            alias_index_key(&alias.key_id, &alias.alias_name).as_str(),
            (),
        )
        .map_err(backend("writing"))?;
    Ok(())
}

/// Makes `creation` in `txn`, refusing a taken name with [`StoreError::AlreadyExists`]
/// (and a key changed since it was read with [`StoreError::Conflict`]).
fn create(txn: &WriteTransaction, creation: &Creation) -> StoreResult<()> {
    /// Inserts a record under a name that must be free.
    fn insert_new<T: Serialize>(
        txn: &WriteTransaction,
        table: RecordTable,
        name: &str,
        record: &T,
    ) -> StoreResult<()> {
        let mut table = write_table(txn, table)?;
        if table.get(name).map_err(backend("reading"))?.is_some() {
            return Err(StoreError::AlreadyExists);
        }
        table
            .insert(name, encode(record)?.as_slice())
            .map_err(backend("writing"))?;
        Ok(())
    }
    match creation {
        Creation::Key(key, initial) => {
            insert_new(txn, KEYS, &key.key_id, key)?;
            insert_version(txn, initial)
        }
        Creation::Version(key, version) => {
            replace_key(txn, key)?;
            insert_version(txn, version)
        }
        Creation::Secret(secret) => insert_new(txn, SECRETS, &secret.secret_name, secret),
        Creation::ClientKey(key) => insert_new(txn, CLIENT_KEYS, &key.client_key_id, key),
    }
}

/// The `IDEMPOTENCY` entry of a token: its scope and the token, unambiguously joined
/// (a JSON array), as principals may hold any character.
fn token_key(operation: &str, principal: &str, token: &str) -> String {
    serde_json::json!([operation, principal, token]).to_string()
}

/// Writes `token`'s record in `txn` unless a live one holds its place
/// ([`StoreError::TokenTaken`]); an expired one is replaced.
fn claim_token(txn: &WriteTransaction, token: &IdempotencyRecord) -> StoreResult<()> {
    let mut table = write_table(txn, IDEMPOTENCY)?;
    let name = token_key(&token.operation, &token.principal, &token.token);
    let existing: Option<IdempotencyRecord> = table
        .get(name.as_str())
        .map_err(backend("reading"))?
        .map(|bytes| decode(bytes.value()))
        .transpose()?;
    if existing.is_some_and(|found| found.expires_at_ms > token.created_at_ms) {
        return Err(StoreError::TokenTaken);
    }
    table
        .insert(name.as_str(), encode(token)?.as_slice())
        .map_err(backend("writing"))?;
    Ok(())
}

fn key_exists(txn: &WriteTransaction, key_id: &str) -> StoreResult<bool> {
    let keys = write_table(txn, KEYS)?;
    Ok(keys.get(key_id).map_err(backend("reading"))?.is_some())
}

#[async_trait]
impl KeyStore for RedbStore {
    async fn insert_key(&self, key: &KeyRecord, initial: &VersionRecord) -> StoreResult<()> {
        let creation = Creation::Key(key.clone(), initial.clone());
        self.write(move |txn| create(txn, &creation)).await
    }

    async fn get_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>> {
        self.get(KEYS, key_id.to_owned()).await
    }

    async fn list_keys(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<KeyRecord>> {
        let after = after.map(str::to_owned);
        self.read(move |txn| get_page(txn, KEYS, after.as_deref(), limit))
            .await
    }

    async fn update_key(&self, key: &KeyRecord) -> StoreResult<()> {
        let key = key.clone();
        self.write(move |txn| replace_key(txn, &key)).await
    }

    async fn add_version(&self, key: &KeyRecord, version: &VersionRecord) -> StoreResult<()> {
        let creation = Creation::Version(key.clone(), version.clone());
        self.write(move |txn| create(txn, &creation)).await
    }

    async fn get_version(
        &self,
        key_id: &str,
        version_id: &str,
    ) -> StoreResult<Option<VersionRecord>> {
        self.get(VERSIONS, version_key(key_id, version_id)).await
    }

    async fn find_version(&self, version_id: &str) -> StoreResult<Option<VersionRecord>> {
        let version_id = version_id.to_owned();
        self.read(move |txn| {
            let owners = read_table(txn, VERSION_OWNERS)?;
            let Some(key_id) = owners
                .get(version_id.as_str())
                .map_err(backend("reading"))?
            else {
                return Ok(None);
            };
            get_record(txn, VERSIONS, &version_key(key_id.value(), &version_id))
        })
        .await
    }

    async fn list_versions(&self, key_id: &str) -> StoreResult<Vec<VersionRecord>> {
        let (start, end) = version_range(key_id);
        self.read(move |txn| {
            let versions = read_table(txn, VERSIONS)?;
            let mut out: Vec<VersionRecord> = Vec::new();
            for entry in versions
                .range::<&str>(start.as_str()..end.as_str())
                .map_err(backend("reading"))?
            {
                let (_, bytes) = entry.map_err(backend("reading"))?;
                out.push(decode(bytes.value())?);
            }
            out.sort_by(|a, b| {
                (a.created_at_ms, &a.version_id).cmp(&(b.created_at_ms, &b.version_id))
            });
            Ok(out)
        })
        .await
    }

    async fn destroy_key(&self, key_id: &str, revision: u64) -> StoreResult<bool> {
        let key_id = key_id.to_owned();
        self.write(move |txn| {
            let mut keys = write_table(txn, KEYS)?;
            let stored: KeyRecord = match keys.get(key_id.as_str()).map_err(backend("reading"))? {
                Some(bytes) => decode(bytes.value())?,
                None => return Ok(false),
            };
            if stored.revision != revision {
                return Err(StoreError::Conflict);
            }
            keys.remove(key_id.as_str()).map_err(backend("writing"))?;
            let (start, end) = version_range(&key_id);
            let mut versions = write_table(txn, VERSIONS)?;
            let mut owners = write_table(txn, VERSION_OWNERS)?;
            let mut removed = Vec::new();
            for entry in versions
                .extract_from_if::<&str, _>(start.as_str()..end.as_str(), |_, _| true)
                .map_err(backend("writing"))?
            {
                let (name, _) = entry.map_err(backend("writing"))?;
                if let Some((_, version_id)) = name.value().split_once('/') {
                    removed.push(version_id.to_owned());
                }
            }
            for version_id in removed {
                owners
                    .remove(version_id.as_str())
                    .map_err(backend("writing"))?;
            }
            // The key's aliases, found through the index: their count, not all.
            let mut aliases = write_table(txn, ALIASES)?;
            let mut index = write_table(txn, ALIASES_BY_KEY)?;
            for entry in index
                .extract_from_if::<&str, _>(start.as_str()..end.as_str(), |_, _| true)
                .map_err(backend("writing"))?
            {
                let (name, _) = entry.map_err(backend("writing"))?;
                if let Some((_, alias_name)) = name.value().split_once('/') {
                    aliases.remove(alias_name).map_err(backend("writing"))?;
                }
            }
            Ok(true)
        })
        .await
    }

    async fn insert_alias(&self, alias: &AliasRecord) -> StoreResult<()> {
        let alias = alias.clone();
        self.write(move |txn| put_alias(txn, &alias, AliasExpectation::New))
            .await
    }

    async fn update_alias(&self, alias: &AliasRecord) -> StoreResult<()> {
        let alias = alias.clone();
        self.write(move |txn| put_alias(txn, &alias, AliasExpectation::Existing))
            .await
    }

    async fn delete_alias(&self, alias_name: &str) -> StoreResult<bool> {
        let alias_name = alias_name.to_owned();
        self.write(move |txn| {
            let mut aliases = write_table(txn, ALIASES)?;
            let removed: Option<AliasRecord> = aliases
                .remove(alias_name.as_str())
                .map_err(backend("writing"))?
                .map(|bytes| decode(bytes.value()))
                .transpose()?;
            let Some(removed) = removed else {
                return Ok(false);
            };
            let mut index = write_table(txn, ALIASES_BY_KEY)?;
            index
                .remove(alias_index_key(&removed.key_id, &removed.alias_name).as_str())
                .map_err(backend("writing"))?;
            Ok(true)
        })
        .await
    }

    async fn get_alias(&self, alias_name: &str) -> StoreResult<Option<AliasRecord>> {
        self.get(ALIASES, alias_name.to_owned()).await
    }

    async fn list_aliases(
        &self,
        key_id: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<AliasRecord>> {
        let key_id = key_id.map(str::to_owned);
        let after = after.map(str::to_owned);
        self.read(move |txn| {
            let Some(key_id) = key_id else {
                return get_page(txn, ALIASES, after.as_deref(), limit);
            };
            let aliases = read_table(txn, ALIASES)?;
            let mut out = Vec::new();
            // One key's aliases: a range of the index, then one read per alias.
            let index = read_table(txn, ALIASES_BY_KEY)?;
            let (first, end) = version_range(&key_id);
            let start = match &after {
                Some(after) => Bound::Excluded(alias_index_key(&key_id, after)),
                None => Bound::Included(first),
            };
            let range = index
                .range::<&str>((
                    start.as_ref().map(String::as_str),
                    Bound::Excluded(end.as_str()),
                ))
                .map_err(backend("reading"))?;
            for entry in range.take(limit) {
                let (name, _) = entry.map_err(backend("reading"))?;
                let name = name.value();
                let alias_name = name.split_once('/').map_or(name, |(_, alias)| alias);
                let bytes = aliases
                    .get(alias_name)
                    .map_err(backend("reading"))?
                    .ok_or_else(|| {
                        StoreError::backend(
                            "reading the alias index",
                            format!("indexed alias {alias_name} is missing (corrupt store?)"),
                        )
                    })?;
                out.push(decode(bytes.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn insert_client_key(&self, key: &ClientKeyRecord) -> StoreResult<()> {
        let creation = Creation::ClientKey(key.clone());
        self.write(move |txn| create(txn, &creation)).await
    }

    async fn replace_client_key(&self, key: &ClientKeyRecord) -> StoreResult<bool> {
        let key = key.clone();
        self.write(move |txn| {
            let mut table = write_table(txn, CLIENT_KEYS)?;
            let id = key.client_key_id.as_str();
            if table.get(id).map_err(backend("reading"))?.is_none() {
                return Ok(false);
            }
            table
                .insert(id, encode(&key)?.as_slice())
                .map_err(backend("writing"))?;
            Ok(true)
        })
        .await
    }

    async fn get_client_key(&self, client_key_id: &str) -> StoreResult<Option<ClientKeyRecord>> {
        self.get(CLIENT_KEYS, client_key_id.to_owned()).await
    }

    async fn list_client_keys(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<ClientKeyRecord>> {
        let after = after.map(str::to_owned);
        self.read(move |txn| get_page(txn, CLIENT_KEYS, after.as_deref(), limit))
            .await
    }

    async fn delete_client_key(&self, client_key_id: &str) -> StoreResult<bool> {
        let id = client_key_id.to_owned();
        self.write(move |txn| {
            let mut table = write_table(txn, CLIENT_KEYS)?;
            let removed = table
                .remove(id.as_str())
                .map_err(backend("writing"))?
                .is_some();
            Ok(removed)
        })
        .await
    }

    async fn insert_secret(&self, secret: &SecretRecord) -> StoreResult<()> {
        let creation = Creation::Secret(secret.clone());
        self.write(move |txn| create(txn, &creation)).await
    }

    async fn get_secret(&self, secret_name: &str) -> StoreResult<Option<SecretRecord>> {
        self.get(SECRETS, secret_name.to_owned()).await
    }

    async fn list_secrets(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<SecretRecord>> {
        let after = after.map(str::to_owned);
        self.read(move |txn| get_page(txn, SECRETS, after.as_deref(), limit))
            .await
    }

    async fn update_secret(&self, secret: &SecretRecord) -> StoreResult<()> {
        let secret = secret.clone();
        self.write(move |txn| {
            let mut table = write_table(txn, SECRETS)?;
            let name = secret.secret_name.as_str();
            let stored: SecretRecord = match table.get(name).map_err(backend("reading"))? {
                Some(bytes) => decode(bytes.value())?,
                None => return Err(StoreError::NotFound),
            };
            if stored.revision.checked_add(1) != Some(secret.revision) {
                return Err(StoreError::Conflict);
            }
            table
                .insert(name, encode(&secret)?.as_slice())
                .map_err(backend("writing"))?;
            Ok(())
        })
        .await
    }

    async fn delete_secret(&self, secret_name: &str, revision: u64) -> StoreResult<bool> {
        let name = secret_name.to_owned();
        self.write(move |txn| {
            let mut table = write_table(txn, SECRETS)?;
            let stored: SecretRecord = match table.get(name.as_str()).map_err(backend("reading"))? {
                Some(bytes) => decode(bytes.value())?,
                None => return Ok(false),
            };
            if stored.revision != revision {
                return Err(StoreError::Conflict);
            }
            table.remove(name.as_str()).map_err(backend("writing"))?;
            Ok(true)
        })
        .await
    }

    async fn get_meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let name = name.to_owned();
        self.read(move |txn| {
            let meta = read_table(txn, META)?;
            let found = meta.get(name.as_str()).map_err(backend("reading"))?;
            Ok(found.map(|bytes| bytes.value().to_vec()))
        })
        .await
    }

    async fn put_meta_if_absent(&self, name: &str, value: &[u8]) -> StoreResult<bool> {
        let name = name.to_owned();
        let value = value.to_vec();
        self.write(move |txn| {
            let mut meta = write_table(txn, META)?;
            if meta
                .get(name.as_str())
                .map_err(backend("reading"))?
                .is_some()
            {
                return Ok(false);
            }
            meta.insert(name.as_str(), value.as_slice())
                .map_err(backend("writing"))?;
            Ok(true)
        })
        .await
    }

    async fn reseal_all(
        &self,
        mut reseal: Resealer,
        meta: Vec<(String, Vec<u8>)>,
    ) -> StoreResult<u64> {
        self.write(move |txn| {
            let mut versions = write_table(txn, VERSIONS)?;
            let mut resealed = Vec::new();
            for entry in versions.iter().map_err(backend("reading"))? {
                let (name, bytes) = entry.map_err(backend("reading"))?;
                let mut version: VersionRecord = decode(bytes.value())?;
                version.material = reseal(&version)
                    .map_err(|err| StoreError::backend("resealing version material", err))?;
                resealed.push((name.value().to_owned(), encode(&version)?));
            }
            for (name, bytes) in &resealed {
                versions
                    .insert(name.as_str(), bytes.as_slice())
                    .map_err(backend("writing"))?;
            }
            let mut table = write_table(txn, META)?;
            for (name, value) in &meta {
                table
                    .insert(name.as_str(), value.as_slice())
                    .map_err(backend("writing"))?;
            }
            Ok(resealed.len() as u64)
        })
        .await
    }

    async fn snapshot(&self, path: &Path) -> StoreResult<bool> {
        let path = path.to_owned();
        self.read(move |txn| {
            write_snapshot(txn, &path)?;
            Ok(true)
        })
        .await
    }

    async fn create_once(&self, token: &IdempotencyRecord, creation: Creation) -> StoreResult<()> {
        let token = token.clone();
        self.write(move |txn| {
            claim_token(txn, &token)?;
            create(txn, &creation)
        })
        .await
    }

    async fn get_idempotency(
        &self,
        operation: &str,
        principal: &str,
        token: &str,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        self.get(IDEMPOTENCY, token_key(operation, principal, token))
            .await
    }

    async fn purge_idempotency(&self, now_ms: u64) -> StoreResult<u64> {
        self.write(move |txn| {
            let mut table = write_table(txn, IDEMPOTENCY)?;
            let mut expired = Vec::new();
            for entry in table.iter().map_err(backend("reading"))? {
                let (name, bytes) = entry.map_err(backend("reading"))?;
                let record: IdempotencyRecord = decode(bytes.value())?;
                if record.expires_at_ms <= now_ms {
                    expired.push(name.value().to_owned());
                }
            }
            for name in &expired {
                table.remove(name.as_str()).map_err(backend("writing"))?;
            }
            Ok(expired.len() as u64)
        })
        .await
    }

    async fn counts(&self) -> StoreResult<StoreCounts> {
        self.read(|txn| {
            let keys = read_table(txn, KEYS)?;
            let versions = read_table(txn, VERSIONS)?;
            let aliases = read_table(txn, ALIASES)?;
            Ok(StoreCounts {
                keys: keys.len().map_err(backend("reading"))?,
                versions: versions.len().map_err(backend("reading"))?,
                aliases: aliases.len().map_err(backend("reading"))?,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{StoreFactory, add_key, alias, key, version};

    /// Opens redb stores in one temporary data directory, removed when dropped.
    struct RedbFactory {
        dir: tempfile::TempDir,
    }

    impl RedbFactory {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }
    }

    impl StoreFactory for RedbFactory {
        async fn open(&self) -> Arc<dyn KeyStore> {
            Arc::new(RedbStore::open(self.dir.path()).unwrap())
        }
    }

    #[tokio::test]
    async fn a_snapshot_taken_while_writing_holds_every_table_as_of_one_moment() {
        use crate::keys::testing::Fixture;
        let fixture = Fixture::new().await;
        for _ in 0..3 {
            let key = crate::keys::testing::create(&fixture.registry).await;
            fixture
                .registry
                .create_alias(&key, &format!("alias/{key}"))
                .await
                .unwrap();
        }
        let store = fixture.registry.store_for_tests();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.redb");
        // Writers keep going while the snapshot is taken; it sees one moment.
        let writer = {
            let registry = fixture.registry.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    crate::keys::testing::create(&registry).await;
                }
            })
        };
        assert!(store.snapshot(&path).await.unwrap());
        writer.await.unwrap();

        let copy = RedbStore {
            db: Arc::new(Database::open(&path).unwrap()),
        };
        let tables = |db: &Database| {
            let txn = db.begin_read().unwrap();
            let mut names: Vec<String> = txn
                .list_tables()
                .unwrap()
                .map(|t| t.name().to_owned())
                .collect();
            names.sort();
            names
        };
        let live = store.counts().await.unwrap();
        let snap = copy.counts().await.unwrap();
        assert_eq!(tables(&copy.db), {
            let dir2 = tempfile::tempdir().unwrap();
            tables(&RedbStore::open(dir2.path()).unwrap().db)
        });
        assert!(
            snap.keys >= 3 && snap.keys <= live.keys,
            "{snap:?} {live:?}"
        );
        assert_eq!(snap.keys, snap.versions, "every key with its one version");
        assert_eq!(snap.aliases, 3);
        // Every key of the snapshot reads back whole, with its version and aliases.
        for key in copy.list_keys(None, 100).await.unwrap() {
            assert_eq!(copy.list_versions(&key.key_id).await.unwrap().len(), 1);
            assert_eq!(store.get_key(&key.key_id).await.unwrap(), Some(key));
        }
        assert_eq!(
            copy.get_meta(crate::keys::root_key::CHECK_ENTRY)
                .await
                .unwrap(),
            store
                .get_meta(crate::keys::root_key::CHECK_ENTRY)
                .await
                .unwrap()
        );
    }

    mod conformance {
        crate::store::conformance::suite!(super::RedbFactory::new());
    }

    /// One key's aliases are read through the index, never by a scan of every alias:
    /// an undecodable alias of ANOTHER key (written behind the store's back) cannot
    /// disturb the lookup, which a scan that decodes every alias would trip over.
    #[tokio::test]
    async fn one_keys_aliases_are_read_without_touching_other_keys_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        for id in ["key-a", "key-b"] {
            add_key(&store, id).await;
        }
        let alias = alias("alias/z-of-b", "key-b");
        store.insert_alias(&alias).await.unwrap();
        let txn = store.db.begin_write().unwrap();
        {
            let mut aliases = txn.open_table(ALIASES).unwrap();
            aliases
                .insert("alias/m-garbage", b"not a record".as_slice())
                .unwrap();
        }
        txn.commit().unwrap();

        let of_b = store.list_aliases(Some("key-b"), None, 10).await.unwrap();
        assert_eq!(of_b, vec![alias]);
        let of_a = store.list_aliases(Some("key-a"), None, 10).await.unwrap();
        assert!(of_a.is_empty(), "{of_a:?}");
        // The full listing does read every alias, and says the store is damaged.
        assert!(store.list_aliases(None, None, 10).await.is_err());
    }

    #[tokio::test]
    async fn a_second_open_of_the_same_directory_fails() {
        let dir = tempfile::tempdir().unwrap();
        let _first = RedbStore::open(dir.path()).unwrap();
        let err = RedbStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
        // The backend's own reason is kept as the source.
        assert!(std::error::Error::source(&err).is_some());
        assert!(err.chain().len() > err.to_string().len(), "{}", err.chain());
    }

    #[tokio::test]
    async fn a_store_made_before_the_alias_index_gets_it_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RedbStore::open(dir.path()).unwrap();
            for id in ["key-a", "key-b"] {
                add_key(&store, id).await;
            }
            for (name, id) in [("alias/x", "key-a"), ("alias/y", "key-b")] {
                store.insert_alias(&alias(name, id)).await.unwrap();
            }
            // As a store of an early release: no index, no recorded format.
            store
                .write(|txn| {
                    txn.delete_table(ALIASES_BY_KEY)
                        .map_err(backend("writing"))?;
                    write_table(txn, META)?
                        .remove(format::FORMAT_ENTRY)
                        .map_err(backend("writing"))?;
                    Ok(())
                })
                .await
                .unwrap();
        }
        let store = RedbStore::open(dir.path()).unwrap();
        let of_a = store.list_aliases(Some("key-a"), None, 10).await.unwrap();
        assert_eq!(of_a.len(), 1);
        assert_eq!(of_a[0].alias_name, "alias/x");
        assert!(store.destroy_key("key-b", 0).await.unwrap());
        assert!(store.get_alias("alias/y").await.unwrap().is_none());
    }

    /// Sets the store's recorded format entry (`None` removes it), as another
    /// release would have left it.
    async fn record_format(store: &RedbStore, entry: Option<Vec<u8>>) {
        store
            .write(move |txn| {
                let mut meta = write_table(txn, META)?;
                match &entry {
                    Some(bytes) => meta.insert(format::FORMAT_ENTRY, bytes.as_slice()),
                    None => meta.remove(format::FORMAT_ENTRY),
                }
                .map_err(backend("writing"))?;
                Ok(())
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_new_store_records_its_format() {
        let dir = tempfile::tempdir().unwrap();
        drop(RedbStore::open(dir.path()).unwrap());
        let entry = RedbStore::peek_meta(dir.path(), format::FORMAT_ENTRY).unwrap();
        assert_eq!(entry.unwrap(), STORE_FORMAT.to_string().into_bytes());
    }

    #[tokio::test]
    async fn an_older_format_is_migrated_after_a_copy_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RedbStore::open(dir.path()).unwrap();
            add_key(&store, "key-a").await;
            record_format(&store, None).await;
        }
        let file = dir.path().join(DB_FILE_NAME);
        let before = std::fs::read(&file).unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        assert!(store.get_key("key-a").await.unwrap().is_some());
        drop(store);
        let kept = dir.path().join(format!("{DB_FILE_NAME}.format-0.bak"));
        assert!(
            std::fs::read(&kept).unwrap() == before,
            "the copy is the store as it was"
        );
        let entry = RedbStore::peek_meta(dir.path(), format::FORMAT_ENTRY).unwrap();
        assert_eq!(entry.unwrap(), STORE_FORMAT.to_string().into_bytes());
        // The kept copy opens as the old store (and would migrate in its turn).
        let restored = tempfile::tempdir().unwrap();
        std::fs::copy(&kept, restored.path().join(DB_FILE_NAME)).unwrap();
        let old = RedbStore::open(restored.path()).unwrap();
        assert!(old.get_key("key-a").await.unwrap().is_some());
    }

    /// Format 2 → 3: a store without the token table gets it, and takes tokens.
    #[tokio::test]
    async fn a_format_2_store_gains_the_token_table() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RedbStore::open(dir.path()).unwrap();
            add_key(&store, "key-a").await;
            store
                .write(|txn| {
                    txn.delete_table(IDEMPOTENCY).map_err(backend("writing"))?;
                    Ok(())
                })
                .await
                .unwrap();
            record_format(&store, Some(format::encode(2))).await;
        }
        let store = RedbStore::open(dir.path()).unwrap();
        assert!(
            dir.path()
                .join(format!("{DB_FILE_NAME}.format-2.bak"))
                .exists()
        );
        let token = IdempotencyRecord {
            operation: "CreateKey".into(),
            principal: String::new(),
            token: "t".into(),
            request_mac: vec![1; 32],
            outcome: "key-b".into(),
            created_at_ms: 5,
            expires_at_ms: 10,
        };
        let creation = Creation::Key(key("key-b"), version("key-b", "key-b-v1", 1));
        store.create_once(&token, creation).await.unwrap();
        assert_eq!(
            store.get_idempotency("CreateKey", "", "t").await.unwrap(),
            Some(token)
        );
        drop(store);
        let entry = RedbStore::peek_meta(dir.path(), format::FORMAT_ENTRY).unwrap();
        assert_eq!(entry.unwrap(), b"3");
    }

    #[tokio::test]
    async fn a_newer_format_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RedbStore::open(dir.path()).unwrap();
            add_key(&store, "key-a").await;
            record_format(&store, Some(format::encode(STORE_FORMAT + 1))).await;
        }
        let file = dir.path().join(DB_FILE_NAME);
        let before = std::fs::read(&file).unwrap();
        let err = RedbStore::open(dir.path()).unwrap_err();
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(cause.contains("newer than this kmsd knows"), "{cause}");
        assert!(
            std::fs::read(&file).unwrap() == before,
            "the file is untouched"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no copy, no migration"
        );
    }

    /// Whether `haystack` holds `needle`.
    fn holds(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[tokio::test]
    async fn destroyed_material_leaves_the_file_at_the_next_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(DB_FILE_NAME);
        // Each key's material distinct, so that the doomed key's can be found.
        let record = |id: &str, fill: u8| {
            let mut version = version(id, &format!("{id}-v1"), 0);
            version.material = crate::store::SealedMaterial {
                iv: vec![fill; 12],
                ciphertext: (0..48u8).map(|i| i.wrapping_mul(fill) ^ fill).collect(),
            };
            (key(id), version)
        };
        let (doomed, doomed_version) = record("key-doomed", 0xa7);
        // As the store writes it (records are JSON).
        let sealed = serde_json::to_vec(&doomed_version.material.ciphertext).unwrap();
        {
            let store = RedbStore::open(dir.path()).unwrap();
            store.insert_key(&doomed, &doomed_version).await.unwrap();
            for i in 0..50u8 {
                let (key, version) = record(&format!("key-{i:03}"), i);
                store.insert_key(&key, &version).await.unwrap();
            }
        }
        assert!(holds(&std::fs::read(&file).unwrap(), &sealed));
        {
            let store = RedbStore::open(dir.path()).unwrap();
            assert!(store.destroy_key("key-doomed", 0).await.unwrap());
            assert!(store.find_version("key-doomed-v1").await.unwrap().is_none());
        }
        let destroyed = holds(&std::fs::read(&file).unwrap(), &sealed);
        let (before, after) = RedbStore::compact_file(dir.path()).unwrap();
        let compacted = holds(&std::fs::read(&file).unwrap(), &sealed);
        eprintln!(
            "sealed material in the file: after destruction {destroyed}, after compaction \
             {compacted} ({before} -> {after} bytes)"
        );
        assert!(
            !compacted,
            "compaction left the destroyed material in the file"
        );
        // The rest is intact.
        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(store.counts().await.unwrap().keys, 50);
    }

    /// The cost of `kmsd rotate-root-key` on a store of 10,000 versions: resealing in
    /// one transaction, then compacting. Run with
    /// `cargo test --lib rotation_cost -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore = "a measurement"]
    async fn rotation_cost() {
        use crate::crypto::secret::MasterKeyMaterial;
        let dir = tempfile::tempdir().unwrap();
        let old = MasterKeyMaterial::from_bytes(&[1; 32]).unwrap();
        let new = MasterKeyMaterial::from_bytes(&[2; 32]).unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let count = 10_000;
        let versions: Vec<VersionRecord> = (0..count)
            .map(|i| {
                let mut version = VersionRecord {
                    key_id: format!("key-{i:06}"),
                    version_id: format!("{i:08}-0000-4000-8000-000000000000"),
                    created_at_ms: 0,
                    material: crate::store::SealedMaterial {
                        iv: vec![],
                        ciphertext: vec![],
                    },
                };
                let sealed = crate::crypto::sealer::seal(
                    &old,
                    crate::crypto::sealer::SealPurpose::KeyMaterialAtRest,
                    format!(
                        "kmsd/v1/key-material\0{}\0{}",
                        version.key_id, version.version_id
                    )
                    .as_bytes(),
                    &[9; 32],
                )
                .unwrap();
                version.material.iv = sealed.iv.to_vec();
                version.material.ciphertext = sealed.ciphertext;
                version
            })
            .collect();
        store
            .write(move |txn| {
                for version in &versions {
                    insert_version(txn, version)?;
                }
                Ok(())
            })
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let resealed = store
            .reseal_all(
                Box::new(move |v| {
                    crate::keys::material_at_rest::reseal(&old, &new, v).map_err(Into::into)
                }),
                vec![],
            )
            .await
            .unwrap();
        let reseal = started.elapsed();
        drop(store);
        let started = std::time::Instant::now();
        let (before, after) = RedbStore::compact_file(dir.path()).unwrap();
        eprintln!(
            "{resealed} versions: reseal {reseal:?}, compaction {:?} ({before} -> {after} bytes)",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn peeking_reads_meta_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RedbStore::peek_meta(dir.path(), "check").unwrap().is_none());
        // Peeking at a directory without a store creates nothing.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        {
            let store = RedbStore::open(dir.path()).unwrap();
            store.put_meta_if_absent("check", b"one").await.unwrap();
        }
        let file = dir.path().join(DB_FILE_NAME);
        let before = std::fs::read(&file).unwrap();
        assert_eq!(
            RedbStore::peek_meta(dir.path(), "check").unwrap().unwrap(),
            b"one"
        );
        assert!(RedbStore::peek_meta(dir.path(), "other").unwrap().is_none());
        assert_eq!(std::fs::read(&file).unwrap(), before);
    }

    #[tokio::test]
    async fn the_door_opens_and_peeks_the_embedded_store() {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::store::StoreSettings::Embedded {
            data_dir: dir.path().to_owned(),
        };
        assert!(
            crate::store::peek_meta(&settings, "check")
                .await
                .unwrap()
                .is_none()
        );
        {
            let store = crate::store::open(&settings).await.unwrap();
            assert!(store.put_meta_if_absent("check", b"one").await.unwrap());
        }
        assert_eq!(
            crate::store::peek_meta(&settings, "check").await.unwrap(),
            Some(b"one".to_vec())
        );
        assert!(dir.path().join(DB_FILE_NAME).exists());
    }
}
