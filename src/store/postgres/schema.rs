//! The schema: numbered migrations embedded in the binary, applied at start.
//!
//! Each migration is one file `migrations/NNNN_name.sql`, listed in [`MIGRATIONS`] in
//! order; a new one is a new file and a new `migration!` line (never an edit of an applied one).
//! Replicas starting together take one transaction-scoped advisory lock, so exactly
//! one applies what is missing and the others, waiting on the lock, then find nothing
//! left to do. A migration and its record in `kmsd_schema_migrations` commit together:
//! a crash mid-way leaves the previous version whole.

use sqlx::{Connection, Executor, PgConnection, Row};

use super::errors::sql;
use crate::store::{StoreError, StoreResult};

/// One migration: its number and its SQL.
pub(super) struct Migration {
    /// Its version: applied in increasing order, each once.
    pub version: i32,
    /// Its name (the file name without number and extension), for the record.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// A migration from its number, its name and its file `migrations/<file>.sql`.
macro_rules! migration {
    ($version:literal, $name:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("migrations/", $file, ".sql")),
        }
    };
}

/// Every migration, oldest first.
pub(super) const MIGRATIONS: &[Migration] = &[
    migration!(1, "keys", "0001_keys"),
    migration!(2, "client_keys", "0002_client_keys"),
    migration!(3, "client_key_minting", "0003_client_key_minting"),
    migration!(4, "client_key_mac", "0004_client_key_mac"),
    migration!(5, "secrets", "0005_secrets"),
];

/// The advisory lock key migrations take (an arbitrary constant: "kmsd" and 1).
const MIGRATION_LOCK: i64 = 0x6b6d_7364_0000_0001;

/// The newest schema version this build knows.
pub(super) fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Applies the migrations the database lacks, under the migration lock; returns how
/// many it applied. Refuses a database migrated by a newer kmsd (its schema may mean
/// things this build does not know), changing nothing.
pub(super) async fn migrate(conn: &mut PgConnection) -> StoreResult<usize> {
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
    let applied: Vec<i32> = sqlx::query("SELECT version FROM kmsd_schema_migrations")
        .fetch_all(&mut *tx)
        .await
        .map_err(sql("reading the applied migrations"))?
        .iter()
        .map(|row| row.try_get::<i32, _>(0))
        .collect::<Result<_, _>>()
        .map_err(sql("reading the applied migrations"))?;
    if let Some(newest) = applied.iter().copied().max()
        && newest > latest()
    {
        return Err(StoreError::backend(
            "checking the schema version",
            format!(
                "the database's kmsd schema is version {newest}, newer than this kmsd knows \
                 ({}): run a kmsd at least as new as the one that migrated it",
                latest()
            ),
        ));
    }
    let mut count = 0;
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        // Through `Executor` (a boxed future): `RawSql::execute`'s async fn is not
        // `Send` for every lifetime, which a spawned start needs.
        (&mut *tx)
            .execute(sqlx::raw_sql(migration.sql))
            .await
            .map_err(sql("applying a schema migration"))?;
        sqlx::query("INSERT INTO kmsd_schema_migrations (version, name) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.name)
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
    Ok(count)
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
}
