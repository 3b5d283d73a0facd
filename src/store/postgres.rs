//! The PostgreSQL store (`--store postgres://...`): one database behind any number of
//! kmsd replicas.
//!
//! - **Durability**: a write returns once PostgreSQL committed it; what that survives
//!   (a crash of the database host, a failover) is the database's settings
//!   (`synchronous_commit`, synchronous standbys; deploy/README.md).
//! - **Concurrency**: key updates are `UPDATE ... WHERE revision = $n`, so replicas'
//!   read-modify-writes are safe without locks held across calls; a transaction that
//!   loses a race inside PostgreSQL (serialization failure, deadlock) is retried whole.
//! - **Outages**: every call is bounded (a pool acquire timeout, a server-side
//!   `statement_timeout`, and a deadline around the whole call) and fails with
//!   [`StoreError::Unavailable`] rather than hang; broken connections are replaced on
//!   the next call, so service resumes by itself.
//! - **Many replicas**: committed changes are announced over `LISTEN/NOTIFY`
//!   (the `changes` module); maintenance passes take a session advisory lock, so one replica at
//!   a time rotates and destroys.
//! - **Schema**: numbered migrations embedded in the binary, applied at start under an
//!   advisory lock (the `schema` module).
//!
//! Queries are built at run time (`sqlx::query`), so building kmsd needs no database.
//! Material arrives sealed under the root key, as for every backend.

mod changes;
mod errors;
pub mod import;
mod schema;
#[cfg(test)]
pub(crate) mod test_database;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow, PgSslMode};
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::broadcast;

use self::errors::{is_lost_race, sql, sql_state};
use super::{
    AliasRecord, ClientKeyRecord, Creation, IdempotencyRecord, KeyRecord, KeyState, KeyStore,
    MaintenanceLease, MintedUnder, Resealer, SealedMaterial, SecretRecord, StoreChange,
    StoreCounts, StoreError, StoreResult, VersionRecord,
};

/// Transactions that lost a race in PostgreSQL (serialization failure, deadlock) are
/// retried this many times before the failure is returned.
const MAX_RACE_RETRIES: usize = 8;

/// The session advisory lock held by the replica running a maintenance pass ("kmsd"
/// and 2; the migrations take 1).
const MAINTENANCE_LOCK: i64 = 0x6b6d_7364_0000_0002;

// === settings ===

/// Where the database is and how long calls may wait for it.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// `postgres://user[:password]@host[:port]/database[?sslmode=...]`; may hold a
    /// password, so it is never printed (see the `Display` impl).
    url: String,
    /// Connections this replica opens at most (one more listens for changes).
    pub max_connections: u32,
    /// How long a call waits for a connection, and a statement may run, before the
    /// call fails with UNAVAILABLE.
    pub timeout: Duration,
    /// `--store-allow-insecure-transport`: a database on another host may be reached
    /// without a verified TLS connection (the path is protected some other way).
    pub allow_insecure_transport: bool,
}

impl PostgresSettings {
    /// Connections per replica unless configured.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;
    /// The wait for a connection and a statement's time limit unless configured.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// Settings for `url` with the default limits; fails if `url` is not a PostgreSQL
    /// URL (the message never repeats the URL, which may hold a password).
    pub fn new(url: &str) -> Result<Self, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("not a PostgreSQL URL: it must start with postgres://".into());
        }
        PgConnectOptions::from_str(url)
            .map_err(|err| format!("not a usable PostgreSQL URL: {err}"))?;
        Ok(Self {
            url: url.to_owned(),
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            timeout: Self::DEFAULT_TIMEOUT,
            allow_insecure_transport: false,
        })
    }

    /// Why the connection to the database is not protected, if it is not: a host
    /// other than this one (not loopback, not a Unix socket) reached with an sslmode
    /// that does not verify the server's certificate. `disable` and `allow` are
    /// plaintext, the default `prefer` falls back to plaintext, `require` encrypts but
    /// accepts any certificate: each lets whoever sits on the network path read and
    /// rewrite what kmsd reads and writes. `None` for `verify-full` and `verify-ca`, and
    /// for a database on this host. Names host and sslmode, never the URL.
    pub fn unverified_transport(&self) -> Option<String> {
        let options = PgConnectOptions::from_str(&self.url).ok()?;
        if matches!(
            options.get_ssl_mode(),
            PgSslMode::VerifyFull | PgSslMode::VerifyCa
        ) {
            return None;
        }
        let host = options.get_host();
        let local = host.starts_with('/')
            || host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if local {
            return None;
        }
        let mode = format!("{:?}", options.get_ssl_mode()).to_ascii_lowercase();
        Some(format!("host {host} with sslmode {mode}"))
    }

    /// The connection options: the URL's, with kmsd's name and the server-side
    /// statement time limit (a statement that would wait past it is cancelled, and the
    /// call fails with UNAVAILABLE instead of holding a connection).
    fn connect_options(&self) -> StoreResult<PgConnectOptions> {
        let options = PgConnectOptions::from_str(&self.url)
            .map_err(|err| StoreError::backend("parsing the store URL", err))?;
        let millis = self.timeout.as_millis().to_string();
        Ok(options.application_name(&application_name()).options([
            ("statement_timeout", millis.as_str()),
            ("lock_timeout", millis.as_str()),
            // A session that dies mid-transaction frees its locks soon after.
            ("idle_in_transaction_session_timeout", "60000"),
        ]))
    }

    /// The longest a whole store call may take: the wait for a connection plus one
    /// statement's limit. Past it the call fails with UNAVAILABLE, whatever the
    /// network does (a silent peer would otherwise hold it until TCP gives up).
    fn deadline(&self) -> Duration {
        self.timeout * 2
    }
}

/// The `application_name` of this process's sessions, `kmsd/<pid>`: replicas are
/// told apart in `pg_stat_activity`, and offline commands find running servers.
fn application_name() -> String {
    format!("kmsd/{}", std::process::id())
}

impl fmt::Display for PostgresSettings {
    /// `host:port/database`: where, without user or password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match PgConnectOptions::from_str(&self.url) {
            Ok(options) => write!(
                f,
                "{}:{}/{} (sslmode {:?})",
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or(""),
                options.get_ssl_mode()
            ),
            Err(_) => f.write_str("(unparsable URL)"),
        }
    }
}

impl fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("at", &format_args!("{self}"))
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .field("allow_insecure_transport", &self.allow_insecure_transport)
            .finish()
    }
}

// === opening ===

/// Reads one metadata value without changing anything: `None` if the database has no
/// kmsd tables yet, or no such value. Runs no migration, so a refused start (a wrong
/// root key) leaves the database exactly as it was.
pub async fn peek_meta(settings: &PostgresSettings, name: String) -> StoreResult<Option<Vec<u8>>> {
    let options = settings.connect_options()?;
    bounded(settings.deadline(), "reading metadata", async move {
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(sql("connecting"))?;
        let exists: bool = sqlx::query("SELECT to_regclass('kmsd_meta') IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(sql("reading metadata"))?;
        let value = if exists {
            sqlx::query("SELECT value FROM kmsd_meta WHERE name = $1")
                .bind(&name)
                .fetch_optional(&mut conn)
                .await
                .map_err(sql("reading metadata"))?
                .map(|row| row.try_get::<Vec<u8>, _>(0))
                .transpose()
                .map_err(sql("reading metadata"))?
        } else {
            None
        };
        let _ = conn.close().await;
        Ok(value)
    })
    .await
}

/// `VACUUM FULL` of kmsd's tables, so that no dead row version keeps an old sealing
/// (after a root key rotation) or a destroyed key's material in the table files;
/// returns their total size before and after. No statement time limit: it takes as
/// long as the tables need.
pub async fn compact(settings: &PostgresSettings) -> StoreResult<(u64, u64)> {
    let options = settings
        .connect_options()?
        .options([("statement_timeout", "0")]);
    let mut conn = PgConnection::connect_with(&options)
        .await
        .map_err(sql("connecting"))?;
    const SIZE: &str = "SELECT (pg_total_relation_size('kmsd_keys') \
        + pg_total_relation_size('kmsd_versions') + pg_total_relation_size('kmsd_aliases') \
        + pg_total_relation_size('kmsd_meta'))::bigint";
    let size = |row: PgRow| row.try_get::<i64, _>(0).map(|n| n.max(0) as u64);
    let before = sqlx::query(SIZE)
        .fetch_one(&mut conn)
        .await
        .and_then(size)
        .map_err(sql("measuring the tables"))?;
    sqlx::raw_sql("VACUUM FULL kmsd_keys, kmsd_versions, kmsd_aliases, kmsd_meta, kmsd_secrets")
        .execute(&mut conn)
        .await
        .map_err(sql("compacting the tables"))?;
    let after = sqlx::query(SIZE)
        .fetch_one(&mut conn)
        .await
        .and_then(size)
        .map_err(sql("measuring the tables"))?;
    let _ = conn.close().await;
    Ok((before, after))
}

/// Aborts the change listener when the last clone of a store is dropped.
struct ListenerTask(tokio::task::JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A [`KeyStore`] in a PostgreSQL database. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    deadline: Duration,
    changes: broadcast::Sender<StoreChange>,
    _listener: Arc<ListenerTask>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, applies the migrations the database lacks (under the migration lock)
    /// and starts listening for changes. [`StoreError::Unavailable`] if the database
    /// cannot be reached within the settings' timeout.
    pub async fn open(settings: &PostgresSettings) -> StoreResult<Self> {
        let options = settings.connect_options()?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.timeout)
            // A connection the database dropped (a restart, pg_terminate_backend) is
            // found out here and replaced, instead of failing the next call.
            .test_before_acquire(true)
            .connect_with(options.clone())
            .await
            .map_err(sql("connecting"))?;
        {
            let mut conn = pool.acquire().await.map_err(sql("connecting"))?;
            let migrated = schema::migrate(&mut conn).await?;
            if migrated.applied > 0 {
                tracing::info!(
                    applied = migrated.applied,
                    version = schema::latest(),
                    "store schema migrated"
                );
            }
            if let Some(newer) = migrated.newer_schema {
                tracing::warn!(
                    database = newer,
                    known = schema::latest(),
                    "the database's schema is newer than this kmsd knows; every newer \
                     migration lets older replicas keep working, so this one serves \
                     (finish the rolling upgrade)"
                );
            }
        }
        // The listener keeps a connection of its own, outside the pool calls use.
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(settings.timeout)
            .connect_with(options)
            .await
            .map_err(sql("connecting to listen for changes"))?;
        let (changes, _) = broadcast::channel(changes::BUFFER);
        let listener = changes::listen(&listen_pool, changes.clone()).await?;
        Ok(Self {
            pool,
            deadline: settings.deadline(),
            changes,
            _listener: Arc::new(ListenerTask(listener)),
        })
    }

    /// Runs `work` within the call deadline.
    async fn bounded<T>(
        &self,
        context: &'static str,
        work: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        bounded(self.deadline, context, work).await
    }

    /// Runs `work` in a transaction, committed if it returns `Ok`, rolled back
    /// otherwise; a transaction that lost a race is retried whole.
    async fn transaction<T, F>(&self, context: &'static str, work: F) -> StoreResult<T>
    where
        T: Send,
        F: for<'c> Fn(&'c mut PgConnection) -> BoxFuture<'c, StoreResult<T>> + Send + Sync,
    {
        self.bounded(context, async {
            let mut attempt = 0;
            loop {
                let outcome = async {
                    let mut tx = self.pool.begin().await.map_err(sql("beginning"))?;
                    let out = work(&mut tx).await?;
                    tx.commit().await.map_err(sql("committing"))?;
                    Ok(out)
                }
                .await;
                match outcome {
                    Err(err) if is_lost_race(&err) && attempt < MAX_RACE_RETRIES => {
                        attempt += 1;
                        tracing::debug!(attempt, context, "transaction lost a race; retrying");
                    }
                    outcome => return outcome,
                }
            }
        })
        .await
    }

    /// Runs one statement's `call` (`query.fetch_optional(&self.pool)`, ...) within the
    /// call deadline.
    async fn run<R>(
        &self,
        context: &'static str,
        call: impl Future<Output = Result<R, sqlx::Error>>,
    ) -> StoreResult<R> {
        self.bounded(context, async { call.await.map_err(sql(context)) })
            .await
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A statement with its arguments bound.
type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

async fn bounded<T>(
    deadline: Duration,
    context: &'static str,
    work: impl Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    match tokio::time::timeout(deadline, work).await {
        Ok(outcome) => outcome,
        Err(_) => Err(StoreError::unavailable(
            context,
            format!("no answer from the database within {deadline:?}"),
        )),
    }
}

// === rows ===

/// A count or time for a `bigint` column.
fn to_db(value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| {
        StoreError::backend(
            "encoding a record",
            format!("{value} is out of the database's range"),
        )
    })
}

/// A `bigint` column read back as the count or time it holds.
fn from_db(value: i64) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| {
        StoreError::backend(
            "decoding a record (corrupt store?)",
            format!("{value} is negative"),
        )
    })
}

fn state_from_db(state: &str) -> StoreResult<KeyState> {
    match state {
        "Enabled" => Ok(KeyState::Enabled),
        "Disabled" => Ok(KeyState::Disabled),
        "PendingDeletion" => Ok(KeyState::PendingDeletion),
        other => Err(StoreError::backend(
            "decoding a record (corrupt store?)",
            format!("unknown key state {other:?}"),
        )),
    }
}

const KEY_COLUMNS: &str = "key_id, key_spec, key_usage, state, description, created_at_ms, \
    initial_version_id, primary_version_id, rotation_interval_secs, last_rotation_ms, \
    delete_at_ms, revision";

fn key_from_row(row: &PgRow) -> StoreResult<KeyRecord> {
    let decode = sql("decoding a key");
    let get_u64 = |name: &str| -> StoreResult<u64> {
        from_db(row.try_get::<i64, _>(name).map_err(sql("decoding a key"))?)
    };
    let get_opt = |name: &str| -> StoreResult<Option<u64>> {
        row.try_get::<Option<i64>, _>(name)
            .map_err(sql("decoding a key"))?
            .map(from_db)
            .transpose()
    };
    let get_text = |name: &str| -> StoreResult<String> {
        row.try_get::<String, _>(name)
            .map_err(sql("decoding a key"))
    };
    let state: String = row.try_get("state").map_err(decode)?;
    Ok(KeyRecord {
        key_id: get_text("key_id")?,
        key_spec: get_text("key_spec")?,
        key_usage: get_text("key_usage")?,
        state: state_from_db(&state)?,
        description: get_text("description")?,
        created_at_ms: get_u64("created_at_ms")?,
        initial_version_id: get_text("initial_version_id")?,
        primary_version_id: get_text("primary_version_id")?,
        rotation_interval_secs: get_opt("rotation_interval_secs")?,
        last_rotation_ms: get_u64("last_rotation_ms")?,
        delete_at_ms: get_opt("delete_at_ms")?,
        revision: get_u64("revision")?,
    })
}

const VERSION_COLUMNS: &str = "key_id, version_id, created_at_ms, iv, ciphertext";

fn version_from_row(row: &PgRow) -> StoreResult<VersionRecord> {
    let decode = || sql("decoding a version");
    Ok(VersionRecord {
        key_id: row.try_get("key_id").map_err(decode())?,
        version_id: row.try_get("version_id").map_err(decode())?,
        created_at_ms: from_db(row.try_get("created_at_ms").map_err(decode())?)?,
        material: SealedMaterial {
            iv: row.try_get("iv").map_err(decode())?,
            ciphertext: row.try_get("ciphertext").map_err(decode())?,
        },
    })
}

const ALIAS_COLUMNS: &str = "alias_name, key_id, created_at_ms, updated_at_ms";

/// Inserts an alias bound with [`bind_alias`].
fn insert_alias_statement() -> String {
    format!("INSERT INTO kmsd_aliases ({ALIAS_COLUMNS}) VALUES ($1, $2, $3, $4)")
}

fn alias_from_row(row: &PgRow) -> StoreResult<AliasRecord> {
    let decode = || sql("decoding an alias");
    Ok(AliasRecord {
        alias_name: row.try_get("alias_name").map_err(decode())?,
        key_id: row.try_get("key_id").map_err(decode())?,
        created_at_ms: from_db(row.try_get("created_at_ms").map_err(decode())?)?,
        updated_at_ms: from_db(row.try_get("updated_at_ms").map_err(decode())?)?,
    })
}

/// The columns of `kmsd_client_keys`, in [`ClientKeyRecord`] order.
const CLIENT_KEY_COLUMNS: &str = "client_key_id, principal, public_key_der, not_before_ms, \
     not_after_ms, created_at_ms, minted_by, minted_under, mac";

fn client_key_from_row(row: &PgRow) -> StoreResult<ClientKeyRecord> {
    let decode = || sql("decoding a client key");
    Ok(ClientKeyRecord {
        client_key_id: row.try_get("client_key_id").map_err(decode())?,
        principal: row.try_get("principal").map_err(decode())?,
        public_key_der: row.try_get("public_key_der").map_err(decode())?,
        not_before_ms: from_db(row.try_get("not_before_ms").map_err(decode())?)?,
        not_after_ms: from_db(row.try_get("not_after_ms").map_err(decode())?)?,
        created_at_ms: from_db(row.try_get("created_at_ms").map_err(decode())?)?,
        minted_by: row.try_get("minted_by").map_err(decode())?,
        minted_under: MintedUnder::parse(row.try_get("minted_under").map_err(decode())?),
        mac: row.try_get("mac").map_err(decode())?,
    })
}

/// Binds the columns of `key` as the next twelve arguments, in [`KEY_COLUMNS`] order.
fn bind_key<'q>(query: PgQuery<'q>, key: &'q KeyRecord) -> StoreResult<PgQuery<'q>> {
    Ok(query
        .bind(&key.key_id)
        .bind(&key.key_spec)
        .bind(&key.key_usage)
        .bind(key.state.as_str())
        .bind(&key.description)
        .bind(to_db(key.created_at_ms)?)
        .bind(&key.initial_version_id)
        .bind(&key.primary_version_id)
        .bind(key.rotation_interval_secs.map(to_db).transpose()?)
        .bind(to_db(key.last_rotation_ms)?)
        .bind(key.delete_at_ms.map(to_db).transpose()?)
        .bind(to_db(key.revision)?))
}

/// Binds the columns of `alias` as the next four arguments, in [`ALIAS_COLUMNS`] order.
fn bind_alias<'q>(query: PgQuery<'q>, alias: &'q AliasRecord) -> StoreResult<PgQuery<'q>> {
    Ok(query
        .bind(&alias.alias_name)
        .bind(&alias.key_id)
        .bind(to_db(alias.created_at_ms)?)
        .bind(to_db(alias.updated_at_ms)?))
}

/// Binds the columns of `key` as the next nine arguments, in [`CLIENT_KEY_COLUMNS`]
/// order.
fn bind_client_key<'q>(query: PgQuery<'q>, key: &'q ClientKeyRecord) -> StoreResult<PgQuery<'q>> {
    Ok(query
        .bind(&key.client_key_id)
        .bind(&key.principal)
        .bind(&key.public_key_der)
        .bind(to_db(key.not_before_ms)?)
        .bind(to_db(key.not_after_ms)?)
        .bind(to_db(key.created_at_ms)?)
        .bind(&key.minted_by)
        .bind(key.minted_under.as_str())
        .bind(&key.mac))
}

/// A secret's record as its row holds it: JSON (the versions' data sealed).
fn encode_secret(secret: &SecretRecord) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(secret).map_err(|err| StoreError::backend("encoding a record", err))
}

fn secret_from_row(row: &PgRow) -> StoreResult<SecretRecord> {
    let record: Vec<u8> = row.try_get("record").map_err(sql("reading a secret"))?;
    serde_json::from_slice(&record)
        .map_err(|err| StoreError::backend("decoding a record (corrupt store?)", err))
}

/// A page size as SQL's LIMIT.
fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

// === writes ===

/// Writes every column of `key` into the row of its ID if that row is at the revision
/// before `key.revision` ([`StoreError::Conflict`] otherwise, [`StoreError::NotFound`]
/// if there is no such key).
async fn replace_key(conn: &mut PgConnection, key: &KeyRecord) -> StoreResult<()> {
    let previous = key
        .revision
        .checked_sub(1)
        .ok_or(StoreError::Conflict)
        .and_then(to_db)?;
    let update = sqlx::query(
        "UPDATE kmsd_keys SET key_spec = $2, key_usage = $3, state = $4, description = $5, \
         created_at_ms = $6, initial_version_id = $7, primary_version_id = $8, \
         rotation_interval_secs = $9, last_rotation_ms = $10, delete_at_ms = $11, \
         revision = $12 WHERE key_id = $1 AND revision = $13",
    );
    let updated = bind_key(update, key)?
        .bind(previous)
        .execute(&mut *conn)
        .await
        .map_err(sql("updating a key"))?;
    if updated.rows_affected() == 1 {
        return Ok(());
    }
    if key_exists(conn, &key.key_id).await? {
        Err(StoreError::Conflict)
    } else {
        Err(StoreError::NotFound)
    }
}

async fn key_exists(conn: &mut PgConnection, key_id: &str) -> StoreResult<bool> {
    Ok(sqlx::query("SELECT 1 FROM kmsd_keys WHERE key_id = $1")
        .bind(key_id)
        .fetch_optional(conn)
        .await
        .map_err(sql("reading a key"))?
        .is_some())
}

async fn insert_version(conn: &mut PgConnection, version: &VersionRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO kmsd_versions (key_id, version_id, created_at_ms, iv, ciphertext) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&version.key_id)
    .bind(&version.version_id)
    .bind(to_db(version.created_at_ms)?)
    .bind(&version.material.iv)
    .bind(&version.material.ciphertext)
    .execute(conn)
    .await
    .map_err(sql("adding a version"))?;
    Ok(())
}

/// Reseals every version and writes `meta`, in the caller's transaction; the rows are
/// locked as they are read.
async fn reseal_in(
    conn: &mut PgConnection,
    reseal: &mut Resealer,
    meta: &[(String, Vec<u8>)],
) -> StoreResult<u64> {
    sqlx::query("SELECT set_config('statement_timeout', '0', true)")
        .execute(&mut *conn)
        .await
        .map_err(sql("resealing"))?;
    // A replica still serving would seal new versions under the old root key after
    // this commits, and open nothing resealed: refuse while any is connected.
    let others: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name LIKE 'kmsd/%' AND application_name <> $1",
    )
    .bind(application_name())
    .fetch_one(&mut *conn)
    .await
    .map_err(sql("looking for running servers"))?;
    if others > 0 {
        return Err(StoreError::backend(
            "resealing",
            format!(
                "{others} sessions of other kmsd processes are connected to this database: \
                 stop every replica first"
            ),
        ));
    }
    let rows = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM kmsd_versions ORDER BY version_id FOR UPDATE"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(sql("reading versions"))?;
    let mut count = 0;
    for row in rows {
        let version = version_from_row(&row)?;
        let material = reseal(&version)
            .map_err(|err| StoreError::backend("resealing version material", err))?;
        sqlx::query("UPDATE kmsd_versions SET iv = $2, ciphertext = $3 WHERE version_id = $1")
            .bind(version.version_id)
            .bind(material.iv.clone())
            .bind(material.ciphertext.clone())
            .execute(&mut *conn)
            .await
            .map_err(sql("writing resealed material"))?;
        count += 1;
    }
    for (name, value) in meta {
        sqlx::query(
            "INSERT INTO kmsd_meta (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(name.clone())
        .bind(value.clone())
        .execute(&mut *conn)
        .await
        .map_err(sql("writing metadata"))?;
    }
    Ok(count)
}

/// What the store's `context` is while making `creation`.
fn creation_context(creation: &Creation) -> &'static str {
    match creation {
        Creation::Key(..) => "adding a key",
        Creation::Version(..) => "adding a version",
        Creation::Secret(_) => "adding a secret",
        Creation::ClientKey(_) => "adding a client key",
    }
}

/// Makes `creation` in the caller's transaction, refusing a taken name with
/// [`StoreError::AlreadyExists`] (and a key changed since it was read with
/// [`StoreError::Conflict`]).
async fn create_in(conn: &mut PgConnection, creation: &Creation) -> StoreResult<()> {
    match creation {
        Creation::Key(key, initial) => {
            let insert = format!(
                "INSERT INTO kmsd_keys ({KEY_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (key_id) DO NOTHING"
            );
            let inserted = bind_key(sqlx::query(&insert), key)?
                .execute(&mut *conn)
                .await
                .map_err(sql("adding a key"))?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::AlreadyExists);
            }
            insert_version(conn, initial).await
        }
        Creation::Version(key, version) => {
            replace_key(conn, key).await?;
            insert_version(conn, version).await
        }
        Creation::Secret(secret) => {
            let inserted = sqlx::query(
                "INSERT INTO kmsd_secrets (secret_name, revision, record) VALUES ($1, $2, $3) \
                 ON CONFLICT (secret_name) DO NOTHING",
            )
            .bind(&secret.secret_name)
            .bind(to_db(secret.revision)?)
            .bind(encode_secret(secret)?)
            .execute(&mut *conn)
            .await
            .map_err(sql("adding a secret"))?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::AlreadyExists);
            }
            Ok(())
        }
        Creation::ClientKey(key) => {
            let insert = format!(
                "INSERT INTO kmsd_client_keys ({CLIENT_KEY_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (client_key_id) DO NOTHING"
            );
            let inserted = bind_client_key(sqlx::query(&insert), key)?
                .execute(&mut *conn)
                .await
                .map_err(sql("adding a client key"))?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::AlreadyExists);
            }
            Ok(())
        }
    }
}

/// The columns of `kmsd_idempotency`, in [`IdempotencyRecord`] order.
const TOKEN_COLUMNS: &str =
    "operation, principal, token, request_mac, outcome, created_at_ms, expires_at_ms";

fn token_from_row(row: &PgRow) -> StoreResult<IdempotencyRecord> {
    let decode = || sql("decoding an idempotency token");
    Ok(IdempotencyRecord {
        operation: row.try_get("operation").map_err(decode())?,
        principal: row.try_get("principal").map_err(decode())?,
        token: row.try_get("token").map_err(decode())?,
        request_mac: row.try_get("request_mac").map_err(decode())?,
        outcome: row.try_get("outcome").map_err(decode())?,
        created_at_ms: from_db(row.try_get("created_at_ms").map_err(decode())?)?,
        expires_at_ms: from_db(row.try_get("expires_at_ms").map_err(decode())?)?,
    })
}

/// Writes `token`'s row in the caller's transaction unless a live one holds its place
/// ([`StoreError::TokenTaken`]); an expired one is replaced. A replica racing on the
/// same token waits here on the primary key until the first transaction ends, then
/// finds the row taken (or free again, if that one rolled back).
async fn claim_token(conn: &mut PgConnection, token: &IdempotencyRecord) -> StoreResult<()> {
    let insert = format!(
        "INSERT INTO kmsd_idempotency ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (operation, principal, token) DO UPDATE SET \
         request_mac = EXCLUDED.request_mac, outcome = EXCLUDED.outcome, \
         created_at_ms = EXCLUDED.created_at_ms, expires_at_ms = EXCLUDED.expires_at_ms \
         WHERE kmsd_idempotency.expires_at_ms <= EXCLUDED.created_at_ms"
    );
    let claimed = sqlx::query(&insert)
        .bind(&token.operation)
        .bind(&token.principal)
        .bind(&token.token)
        .bind(&token.request_mac)
        .bind(&token.outcome)
        .bind(to_db(token.created_at_ms)?)
        .bind(to_db(token.expires_at_ms)?)
        .execute(&mut *conn)
        .await
        .map_err(sql("claiming an idempotency token"))?;
    if claimed.rows_affected() == 0 {
        return Err(StoreError::TokenTaken);
    }
    Ok(())
}

impl PgStore {
    /// Claims `token` (when given) and makes `creation`, in one transaction.
    async fn create(
        &self,
        token: Option<IdempotencyRecord>,
        creation: Creation,
    ) -> StoreResult<()> {
        self.transaction(creation_context(&creation), move |conn| {
            let (token, creation) = (token.clone(), creation.clone());
            Box::pin(async move {
                if let Some(token) = &token {
                    claim_token(conn, token).await?;
                }
                create_in(conn, &creation).await
            })
        })
        .await
    }
}

/// Whether `err` is the violation of a foreign key (an alias of a missing key).
fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    sql_state(err).as_deref() == Some("23503")
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    sql_state(err).as_deref() == Some("23505")
}

#[async_trait]
impl KeyStore for PgStore {
    async fn insert_key(&self, key: &KeyRecord, initial: &VersionRecord) -> StoreResult<()> {
        self.create(None, Creation::Key(key.clone(), initial.clone()))
            .await
    }

    async fn get_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>> {
        let select = format!("SELECT {KEY_COLUMNS} FROM kmsd_keys WHERE key_id = $1");
        let query = sqlx::query(&select).bind(key_id);
        let row = self
            .run("reading a key", query.fetch_optional(&self.pool))
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_keys(&self, after: Option<&str>, count: usize) -> StoreResult<Vec<KeyRecord>> {
        let select = format!(
            "SELECT {KEY_COLUMNS} FROM kmsd_keys WHERE $1::text IS NULL OR key_id > $1 \
             ORDER BY key_id LIMIT $2"
        );
        let query = sqlx::query(&select).bind(after).bind(limit(count));
        let rows = self
            .run("listing keys", query.fetch_all(&self.pool))
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn update_key(&self, key: &KeyRecord) -> StoreResult<()> {
        let key = key.clone();
        self.transaction("updating a key", move |conn| {
            let key = key.clone();
            Box::pin(async move { replace_key(conn, &key).await })
        })
        .await
    }

    async fn add_version(&self, key: &KeyRecord, version: &VersionRecord) -> StoreResult<()> {
        self.create(None, Creation::Version(key.clone(), version.clone()))
            .await
    }

    async fn get_version(
        &self,
        key_id: &str,
        version_id: &str,
    ) -> StoreResult<Option<VersionRecord>> {
        let select = format!(
            "SELECT {VERSION_COLUMNS} FROM kmsd_versions WHERE key_id = $1 AND version_id = $2"
        );
        let query = sqlx::query(&select).bind(key_id).bind(version_id);
        let row = self
            .run("reading a version", query.fetch_optional(&self.pool))
            .await?;
        row.as_ref().map(version_from_row).transpose()
    }

    async fn find_version(&self, version_id: &str) -> StoreResult<Option<VersionRecord>> {
        let select = format!("SELECT {VERSION_COLUMNS} FROM kmsd_versions WHERE version_id = $1");
        let query = sqlx::query(&select).bind(version_id);
        let row = self
            .run("reading a version", query.fetch_optional(&self.pool))
            .await?;
        row.as_ref().map(version_from_row).transpose()
    }

    async fn list_versions(&self, key_id: &str) -> StoreResult<Vec<VersionRecord>> {
        let select = format!(
            "SELECT {VERSION_COLUMNS} FROM kmsd_versions WHERE key_id = $1 \
             ORDER BY created_at_ms, version_id"
        );
        let query = sqlx::query(&select).bind(key_id);
        let rows = self
            .run("listing versions", query.fetch_all(&self.pool))
            .await?;
        rows.iter().map(version_from_row).collect()
    }

    async fn destroy_key(&self, key_id: &str, revision: u64) -> StoreResult<bool> {
        let (key_id, revision) = (key_id.to_owned(), to_db(revision)?);
        self.transaction("destroying a key", move |conn| {
            let key_id = key_id.clone();
            Box::pin(async move {
                // Versions and aliases go with it (ON DELETE CASCADE), in this
                // transaction.
                let deleted =
                    sqlx::query("DELETE FROM kmsd_keys WHERE key_id = $1 AND revision = $2")
                        .bind(&key_id)
                        .bind(revision)
                        .execute(&mut *conn)
                        .await
                        .map_err(sql("destroying a key"))?;
                if deleted.rows_affected() == 1 {
                    return Ok(true);
                }
                if key_exists(conn, &key_id).await? {
                    Err(StoreError::Conflict)
                } else {
                    Ok(false)
                }
            })
        })
        .await
    }

    async fn insert_alias(&self, alias: &AliasRecord) -> StoreResult<()> {
        let alias = alias.clone();
        self.transaction("adding an alias", move |conn| {
            let alias = alias.clone();
            Box::pin(async move {
                // The key is checked first, as every backend does: a name that is taken
                // and a key that is missing say NotFound.
                if !key_exists(conn, &alias.key_id).await? {
                    return Err(StoreError::NotFound);
                }
                let inserted = bind_alias(sqlx::query(&insert_alias_statement()), &alias)?
                    .execute(&mut *conn)
                    .await;
                match inserted {
                    Ok(_) => Ok(()),
                    Err(err) if is_unique_violation(&err) => Err(StoreError::AlreadyExists),
                    // The key was destroyed between the check and the insert.
                    Err(err) if is_foreign_key_violation(&err) => Err(StoreError::NotFound),
                    Err(err) => Err(sql("adding an alias")(err)),
                }
            })
        })
        .await
    }

    async fn update_alias(&self, alias: &AliasRecord) -> StoreResult<()> {
        let alias = alias.clone();
        self.transaction("re-pointing an alias", move |conn| {
            let alias = alias.clone();
            Box::pin(async move {
                let update = sqlx::query(
                    "UPDATE kmsd_aliases SET key_id = $2, created_at_ms = $3, \
                     updated_at_ms = $4 WHERE alias_name = $1",
                );
                let updated = bind_alias(update, &alias)?.execute(&mut *conn).await;
                match updated {
                    Ok(done) if done.rows_affected() == 1 => Ok(()),
                    Ok(_) => Err(StoreError::NotFound),
                    Err(err) if is_foreign_key_violation(&err) => Err(StoreError::NotFound),
                    Err(err) => Err(sql("re-pointing an alias")(err)),
                }
            })
        })
        .await
    }

    async fn delete_alias(&self, alias_name: &str) -> StoreResult<bool> {
        let query = sqlx::query("DELETE FROM kmsd_aliases WHERE alias_name = $1").bind(alias_name);
        let deleted = self
            .run("deleting an alias", query.execute(&self.pool))
            .await?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn insert_client_key(&self, key: &ClientKeyRecord) -> StoreResult<()> {
        self.create(None, Creation::ClientKey(key.clone())).await
    }

    async fn replace_client_key(&self, key: &ClientKeyRecord) -> StoreResult<bool> {
        let update = sqlx::query(
            "UPDATE kmsd_client_keys SET principal = $2, public_key_der = $3, \
             not_before_ms = $4, not_after_ms = $5, created_at_ms = $6, minted_by = $7, \
             minted_under = $8, mac = $9 WHERE client_key_id = $1",
        );
        let query = bind_client_key(update, key)?;
        let replaced = self
            .run("replacing a client key", query.execute(&self.pool))
            .await?;
        Ok(replaced.rows_affected() == 1)
    }

    async fn get_client_key(&self, client_key_id: &str) -> StoreResult<Option<ClientKeyRecord>> {
        let select =
            format!("SELECT {CLIENT_KEY_COLUMNS} FROM kmsd_client_keys WHERE client_key_id = $1");
        let query = sqlx::query(&select).bind(client_key_id);
        let row = self
            .run("reading a client key", query.fetch_optional(&self.pool))
            .await?;
        row.as_ref().map(client_key_from_row).transpose()
    }

    async fn list_client_keys(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> StoreResult<Vec<ClientKeyRecord>> {
        let select = format!(
            "SELECT {CLIENT_KEY_COLUMNS} FROM kmsd_client_keys \
             WHERE $1::text IS NULL OR client_key_id > $1 ORDER BY client_key_id LIMIT $2"
        );
        let query = sqlx::query(&select).bind(after).bind(limit(count));
        let rows = self
            .run("listing client keys", query.fetch_all(&self.pool))
            .await?;
        rows.iter().map(client_key_from_row).collect()
    }

    async fn delete_client_key(&self, client_key_id: &str) -> StoreResult<bool> {
        let query = sqlx::query("DELETE FROM kmsd_client_keys WHERE client_key_id = $1")
            .bind(client_key_id);
        let deleted = self
            .run("deleting a client key", query.execute(&self.pool))
            .await?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn get_alias(&self, alias_name: &str) -> StoreResult<Option<AliasRecord>> {
        let select = format!("SELECT {ALIAS_COLUMNS} FROM kmsd_aliases WHERE alias_name = $1");
        let query = sqlx::query(&select).bind(alias_name);
        let row = self
            .run("reading an alias", query.fetch_optional(&self.pool))
            .await?;
        row.as_ref().map(alias_from_row).transpose()
    }

    async fn list_aliases(
        &self,
        key_id: Option<&str>,
        after: Option<&str>,
        count: usize,
    ) -> StoreResult<Vec<AliasRecord>> {
        let select = format!(
            "SELECT {ALIAS_COLUMNS} FROM kmsd_aliases \
             WHERE ($1::text IS NULL OR key_id = $1) AND ($2::text IS NULL OR alias_name > $2) \
             ORDER BY alias_name LIMIT $3"
        );
        let query = sqlx::query(&select)
            .bind(key_id)
            .bind(after)
            .bind(limit(count));
        let rows = self
            .run("listing aliases", query.fetch_all(&self.pool))
            .await?;
        rows.iter().map(alias_from_row).collect()
    }

    async fn insert_secret(&self, secret: &SecretRecord) -> StoreResult<()> {
        self.create(None, Creation::Secret(secret.clone())).await
    }

    async fn get_secret(&self, secret_name: &str) -> StoreResult<Option<SecretRecord>> {
        let query =
            sqlx::query("SELECT record FROM kmsd_secrets WHERE secret_name = $1").bind(secret_name);
        let row = self
            .run("reading a secret", query.fetch_optional(&self.pool))
            .await?;
        row.as_ref().map(secret_from_row).transpose()
    }

    async fn list_secrets(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> StoreResult<Vec<SecretRecord>> {
        let query = sqlx::query(
            "SELECT record FROM kmsd_secrets WHERE $1::text IS NULL OR secret_name > $1 \
             ORDER BY secret_name LIMIT $2",
        )
        .bind(after)
        .bind(limit(count));
        let rows = self
            .run("listing secrets", query.fetch_all(&self.pool))
            .await?;
        rows.iter().map(secret_from_row).collect()
    }

    async fn update_secret(&self, secret: &SecretRecord) -> StoreResult<()> {
        let previous = secret
            .revision
            .checked_sub(1)
            .ok_or(StoreError::Conflict)
            .and_then(to_db)?;
        let query = sqlx::query(
            "UPDATE kmsd_secrets SET revision = $2, record = $3 \
             WHERE secret_name = $1 AND revision = $4",
        )
        .bind(&secret.secret_name)
        .bind(to_db(secret.revision)?)
        .bind(encode_secret(secret)?)
        .bind(previous);
        let updated = self
            .run("updating a secret", query.execute(&self.pool))
            .await?;
        if updated.rows_affected() == 1 {
            return Ok(());
        }
        match self.get_secret(&secret.secret_name).await? {
            Some(_) => Err(StoreError::Conflict),
            None => Err(StoreError::NotFound),
        }
    }

    async fn delete_secret(&self, secret_name: &str, revision: u64) -> StoreResult<bool> {
        let query =
            sqlx::query("DELETE FROM kmsd_secrets WHERE secret_name = $1 AND revision = $2")
                .bind(secret_name)
                .bind(to_db(revision)?);
        let deleted = self
            .run("deleting a secret", query.execute(&self.pool))
            .await?;
        if deleted.rows_affected() == 1 {
            return Ok(true);
        }
        match self.get_secret(secret_name).await? {
            Some(_) => Err(StoreError::Conflict),
            None => Ok(false),
        }
    }

    async fn get_meta(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let query = sqlx::query("SELECT value FROM kmsd_meta WHERE name = $1").bind(name);
        let row = self
            .run("reading metadata", query.fetch_optional(&self.pool))
            .await?;
        row.map(|row| row.try_get::<Vec<u8>, _>(0))
            .transpose()
            .map_err(sql("reading metadata"))
    }

    async fn put_meta_if_absent(&self, name: &str, value: &[u8]) -> StoreResult<bool> {
        let query = sqlx::query(
            "INSERT INTO kmsd_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value);
        let inserted = self
            .run("writing metadata", query.execute(&self.pool))
            .await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn create_once(&self, token: &IdempotencyRecord, creation: Creation) -> StoreResult<()> {
        self.create(Some(token.clone()), creation).await
    }

    async fn get_idempotency(
        &self,
        operation: &str,
        principal: &str,
        token: &str,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        let select = format!(
            "SELECT {TOKEN_COLUMNS} FROM kmsd_idempotency \
             WHERE operation = $1 AND principal = $2 AND token = $3"
        );
        let query = sqlx::query(&select)
            .bind(operation)
            .bind(principal)
            .bind(token);
        let row = self
            .run(
                "reading an idempotency token",
                query.fetch_optional(&self.pool),
            )
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn purge_idempotency(&self, now_ms: u64) -> StoreResult<u64> {
        let query = sqlx::query("DELETE FROM kmsd_idempotency WHERE expires_at_ms <= $1")
            .bind(to_db(now_ms)?);
        let purged = self
            .run("purging idempotency tokens", query.execute(&self.pool))
            .await?;
        Ok(purged.rows_affected())
    }

    async fn counts(&self) -> StoreResult<StoreCounts> {
        let query = sqlx::query(
            "SELECT (SELECT count(*) FROM kmsd_keys), (SELECT count(*) FROM kmsd_versions), \
             (SELECT count(*) FROM kmsd_aliases)",
        );
        let row = self.run("counting", query.fetch_one(&self.pool)).await?;
        let get = |i: usize| -> StoreResult<u64> {
            from_db(row.try_get::<i64, _>(i).map_err(sql("counting"))?)
        };
        Ok(StoreCounts {
            keys: get(0)?,
            versions: get(1)?,
            aliases: get(2)?,
        })
    }

    async fn reseal_all(
        &self,
        mut reseal: Resealer,
        meta: Vec<(String, Vec<u8>)>,
    ) -> StoreResult<u64> {
        // Offline (no server running) and possibly long: no call deadline, and no
        // retry (the resealer runs once per version).
        let mut tx = self.pool.begin().await.map_err(sql("beginning"))?;
        let count = reseal_in(&mut tx, &mut reseal, &meta).await?;
        tx.commit().await.map_err(sql("committing"))?;
        Ok(count)
    }

    async fn check_available(&self) -> StoreResult<()> {
        let check = sqlx::query("SELECT 1");
        self.run("checking the database", check.execute(&self.pool))
            .await?;
        Ok(())
    }

    fn watch_changes(&self) -> Option<broadcast::Receiver<StoreChange>> {
        Some(self.changes.subscribe())
    }

    async fn try_lease_maintenance(&self) -> StoreResult<Option<MaintenanceLease>> {
        self.bounded("taking the maintenance lock", async {
            // A session lock on a connection taken out of the pool: it is held until
            // the lease is dropped, which closes the connection (and so releases the
            // lock, also if this process dies), rather than returning a connection
            // that still holds it to the pool.
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(sql("taking the maintenance lock"))?
                .detach();
            let locked: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
                .bind(MAINTENANCE_LOCK)
                .fetch_one(&mut conn)
                .await
                .and_then(|row| row.try_get(0))
                .map_err(sql("taking the maintenance lock"))?;
            Ok(locked.then(|| MaintenanceLease::held_by(SessionLock(Some(conn)))))
        })
        .await
    }
}

/// A connection holding a session advisory lock; closing it releases the lock.
struct SessionLock(Option<PgConnection>);

impl Drop for SessionLock {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // A clean close (Terminate) tells the server at once; dropping the socket
            // would too, a moment later.
            runtime.spawn(async move {
                let _ = conn.close().await;
            });
        }
    }
}

#[cfg(test)]
mod tests;
