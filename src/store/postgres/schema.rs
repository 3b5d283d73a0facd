//! The schema: numbered migrations embedded in the binary, applied at start.
//!
//! Each migration is one file `migrations/NNNN_name.sql`, listed in [`MIGRATIONS`] in
//! order; a new one is a new file and a new `migration!` line (never an edit of an applied one).
//! Replicas starting together take one transaction-scoped advisory lock, so exactly
//! one applies what is missing and the others, waiting on the lock, then find nothing
//! left to do. A migration and its record in `kmsd_schema_migrations` commit together:
//! a crash mid-way leaves the previous version whole.
//!
//! **Rolling upgrades (expand, then contract).** Each migration says whether a binary
//! that knows only the migrations before it can keep using the database once it is
//! applied ([`Older::KeepWorking`]: it only adds what older binaries ignore, such as a
//! table or a column with a default) or must stop ([`Older::MustStop`]: it changes or
//! removes what they read or write). The database records, with each migration, the
//! oldest schema a binary must know to use it (`min_reader`), so a binary that meets a
//! schema newer than it knows serves on when every newer migration lets it, and
//! otherwise refuses at start, naming both versions and changing nothing. A change
//! that would stop older binaries is split: an expanding migration in release N (both
//! releases run side by side during the rollout), the contracting one in a later
//! release, once no replica of the older one is left. `docs/compatibility.md` says so
//! for operators.

use sqlx::{Connection, Executor, PgConnection, Row};

use super::errors::sql;
use crate::store::{StoreError, StoreResult};

/// One migration: its number and its SQL.
#[derive(Clone, Copy)]
pub(super) struct Migration {
    /// Its version: applied in increasing order, each once.
    pub version: i32,
    /// Its name (the file name without number and extension), for the record.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
    /// Whether binaries that know only the earlier migrations may go on using the
    /// database once this one is applied.
    pub older: Older,
}

/// What a migration means for binaries that do not know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Older {
    /// They keep working: it only adds what they never read (expand).
    KeepWorking,
    /// They must stop: they would misread or mishandle what it changes (contract).
    MustStop,
}

/// A migration from its number, its name and its file `migrations/<file>.sql`.
macro_rules! migration {
    ($version:literal, $name:literal, $file:literal, $older:ident) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("migrations/", $file, ".sql")),
            older: Older::$older,
        }
    };
}

/// Every migration, oldest first. 0001-0004 predate the rolling-upgrade contract: each
/// stops older binaries (0003 and 0004 change what a client-key row must carry). 0005
/// only adds the secrets table, 0006 the idempotency tokens: older binaries never read
/// either (one that creates ignores tokens, as it ignores the request field).
pub(super) const MIGRATIONS: &[Migration] = &[
    migration!(1, "keys", "0001_keys", MustStop),
    migration!(2, "client_keys", "0002_client_keys", MustStop),
    migration!(3, "client_key_minting", "0003_client_key_minting", MustStop),
    migration!(4, "client_key_mac", "0004_client_key_mac", MustStop),
    migration!(5, "secrets", "0005_secrets", KeepWorking),
    migration!(6, "idempotency", "0006_idempotency", KeepWorking),
];

/// The advisory lock key migrations take (an arbitrary constant: "kmsd" and 1).
const MIGRATION_LOCK: i64 = 0x6b6d_7364_0000_0001;

/// The newest schema version this build knows.
pub(super) fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The oldest schema a binary must know to use a database migrated through
/// `migrations[index]`: the newest migration up to it that stops older binaries.
pub(super) fn min_reader(migrations: &[Migration], index: usize) -> i32 {
    migrations[..=index]
        .iter()
        .rev()
        .find(|m| m.older == Older::MustStop)
        .or(migrations.first())
        .map_or(0, |m| m.version)
}

/// How a start went: how many migrations it applied, and whether the database is
/// newer than this build (which may use it, as its migrations allow).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Migrated {
    /// Migrations this start applied.
    pub applied: usize,
    /// The database's schema, when newer than this build's.
    pub newer_schema: Option<i32>,
}

/// Applies the migrations the database lacks, under the migration lock. Refuses a
/// database migrated by a newer kmsd unless every newer migration lets older binaries
/// keep working, changing nothing.
pub(super) async fn migrate(conn: &mut PgConnection) -> StoreResult<Migrated> {
    migrate_with(conn, MIGRATIONS).await
}

/// [`migrate`] with the migrations of a given build (tests play two releases).
pub(super) async fn migrate_with(
    conn: &mut PgConnection,
    migrations: &[Migration],
) -> StoreResult<Migrated> {
    let latest = migrations.last().map_or(0, |m| m.version);
    let mut tx = conn.begin().await.map_err(sql("beginning a migration"))?;
    // Replicas wait for each other here; longer than one statement's usual limit.
    sqlx::query("SELECT set_config('statement_timeout', '60000', true)")
        .execute(&mut *tx)
        .await
        .map_err(sql("beginning a migration"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(sql("taking the migration lock"))?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS kmsd_schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .execute(&mut *tx)
    .await
    .map_err(sql("creating the migrations table"))?;
    // Rows recorded before the rolling-upgrade contract have none: they stop older
    // binaries (NULL reads as the row's own version).
    sqlx::query("ALTER TABLE kmsd_schema_migrations ADD COLUMN IF NOT EXISTS min_reader integer")
        .execute(&mut *tx)
        .await
        .map_err(sql("creating the migrations table"))?;
    let rows =
        sqlx::query("SELECT version, COALESCE(min_reader, version) FROM kmsd_schema_migrations")
            .fetch_all(&mut *tx)
            .await
            .map_err(sql("reading the applied migrations"))?;
    let mut applied = Vec::with_capacity(rows.len());
    let mut needs = 0;
    for row in &rows {
        let version: i32 = row
            .try_get(0)
            .map_err(sql("reading the applied migrations"))?;
        let min_reader: i32 = row
            .try_get(1)
            .map_err(sql("reading the applied migrations"))?;
        applied.push(version);
        needs = needs.max(min_reader);
    }
    let newest = applied.iter().copied().max().unwrap_or(0);
    if needs > latest {
        return Err(StoreError::backend(
            "checking the schema version",
            format!(
                "the database's kmsd schema is version {newest}, newer than this kmsd knows \
                 ({latest}), and needs a kmsd that knows schema {needs} or newer: run a kmsd \
                 at least as new as the one that migrated it"
            ),
        ));
    }
    let mut count = 0;
    for (index, migration) in migrations.iter().enumerate() {
        if applied.contains(&migration.version) {
            continue;
        }
        // Through `Executor` (a boxed future): `RawSql::execute`'s async fn is not
        // `Send` for every lifetime, which a spawned start needs.
        (&mut *tx)
            .execute(sqlx::raw_sql(migration.sql))
            .await
            .map_err(sql("applying a schema migration"))?;
        sqlx::query(
            "INSERT INTO kmsd_schema_migrations (version, name, min_reader) VALUES ($1, $2, $3)",
        )
        .bind(migration.version)
        .bind(migration.name)
        .bind(min_reader(migrations, index))
        .execute(&mut *tx)
        .await
        .map_err(sql("recording a schema migration"))?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied a schema migration"
        );
        count += 1;
    }
    tx.commit()
        .await
        .map_err(sql("committing the migrations"))?;
    Ok(Migrated {
        applied: count,
        newer_schema: (newest > latest).then_some(newest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_from_one() {
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version as usize, i + 1, "{}", migration.name);
            assert!(!migration.sql.trim().is_empty());
        }
    }

    #[test]
    fn min_reader_is_the_newest_migration_that_stops_older_binaries() {
        let m = |version, older| Migration {
            version,
            name: "m",
            sql: "SELECT 1",
            older,
        };
        let list = [
            m(1, Older::MustStop),
            m(2, Older::KeepWorking),
            m(3, Older::MustStop),
            m(4, Older::KeepWorking),
            m(5, Older::KeepWorking),
        ];
        let readers: Vec<i32> = (0..list.len()).map(|i| min_reader(&list, i)).collect();
        assert_eq!(readers, [1, 1, 3, 3, 3]);
        // 0005 (secrets) and 0006 (idempotency) only expand: a binary that knows 0004
        // may still use the database.
        assert_eq!(min_reader(MIGRATIONS, MIGRATIONS.len() - 1), 4);
    }
}
