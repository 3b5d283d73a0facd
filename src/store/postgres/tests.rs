//! The PostgreSQL store against a real server: the conformance suite and what only a
//! shared database has (migrations under a lock, announcements, the maintenance lock,
//! outages). Each test has a database of its own; see `test_database.rs` for
//! `KMSD_TEST_POSTGRES_URL`.

use std::sync::Arc;
use std::time::Duration;

use super::test_database::TestDatabase;
use super::*;
use crate::store::conformance::{StoreFactory, add_key, alias, secret};

/// Opens stores on one test database, dropped with the factory.
pub(crate) struct PgFactory {
    db: TestDatabase,
}

impl PgFactory {
    /// `None` when no test server is configured (the test then says so and passes).
    pub(crate) async fn new(label: &str) -> Option<Self> {
        Some(Self {
            db: TestDatabase::create(label).await?,
        })
    }

    fn settings(&self) -> PostgresSettings {
        PostgresSettings::new(&self.db.url).unwrap()
    }
}

impl StoreFactory for PgFactory {
    async fn open(&self) -> Arc<dyn KeyStore> {
        Arc::new(PgStore::open(&self.settings()).await.unwrap())
    }
}

mod conformance {
    // `return` leaves the generated test when no server is configured.
    crate::store::conformance::suite!(match super::PgFactory::new("conformance").await {
        Some(factory) => factory,
        None => return,
    });
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let Some(factory) = PgFactory::new("migrate_together").await else {
        return;
    };
    let settings = factory.settings();
    let opens = (0..4).map(|_| {
        let settings = settings.clone();
        tokio::spawn(async move { PgStore::open(&settings).await })
    });
    for open in opens {
        open.await.unwrap().expect("every replica opens");
    }
    let mut conn = factory.db.connect().await;
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM kmsd_schema_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(versions, (1..=schema::latest()).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let Some(factory) = PgFactory::new("newer_schema").await else {
        return;
    };
    factory.open().await;
    let mut conn = factory.db.connect().await;
    sqlx::query("INSERT INTO kmsd_schema_migrations (version, name) VALUES ($1, 'future')")
        .bind(schema::latest() + 1)
        .execute(&mut conn)
        .await
        .unwrap();
    let err = PgStore::open(&factory.settings()).await.unwrap_err();
    assert!(
        err.chain().contains("newer than this kmsd"),
        "{}",
        err.chain()
    );
}

/// The migrations of a release after this one: this build's and one more.
fn next_release(older: schema::Older) -> Vec<schema::Migration> {
    let mut next = schema::MIGRATIONS.to_vec();
    next.push(schema::Migration {
        version: schema::latest() + 1,
        name: "next_release",
        sql: "CREATE TABLE kmsd_next_release (id integer PRIMARY KEY)",
        older,
    });
    next
}

async fn applied_versions(conn: &mut sqlx::PgConnection) -> Vec<(i32, Option<i32>)> {
    sqlx::query_as("SELECT version, min_reader FROM kmsd_schema_migrations ORDER BY version")
        .fetch_all(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_previous_release_schema_is_brought_up_to_date() {
    let Some(factory) = PgFactory::new("previous_release").await else {
        return;
    };
    let mut conn = factory.db.connect().await;
    let previous = &schema::MIGRATIONS[..schema::MIGRATIONS.len() - 1];
    schema::migrate_with(&mut conn, previous).await.unwrap();
    let store = factory.open().await;
    add_key(&*store, "key-a").await;
    let versions = applied_versions(&mut conn).await;
    assert_eq!(
        versions.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        (1..=schema::latest()).collect::<Vec<_>>()
    );
    assert!(store.get_key("key-a").await.unwrap().is_some());
}

#[tokio::test]
async fn an_older_binary_keeps_serving_after_an_expanding_migration() {
    let Some(factory) = PgFactory::new("expanding").await else {
        return;
    };
    let mut conn = factory.db.connect().await;
    let next = next_release(schema::Older::KeepWorking);
    let migrated = schema::migrate_with(&mut conn, &next).await.unwrap();
    assert_eq!(migrated.applied, next.len());
    // This build plays the previous release beside replicas of the next one.
    let store = factory.open().await;
    add_key(&*store, "key-a").await;
    assert!(store.get_key("key-a").await.unwrap().is_some());
    let versions = applied_versions(&mut conn).await;
    assert_eq!(
        versions.last(),
        Some(&(
            schema::latest() + 1,
            Some(schema::min_reader(
                schema::MIGRATIONS,
                schema::MIGRATIONS.len() - 1
            ))
        )),
        "the expansion keeps what this build's schema needs: it may still read"
    );
}

#[tokio::test]
async fn a_contracting_migration_stops_older_binaries_cleanly() {
    let Some(factory) = PgFactory::new("contracting").await else {
        return;
    };
    let mut conn = factory.db.connect().await;
    let next = next_release(schema::Older::MustStop);
    schema::migrate_with(&mut conn, &next).await.unwrap();
    let before = applied_versions(&mut conn).await;
    let err = PgStore::open(&factory.settings()).await.unwrap_err();
    let chain = err.chain();
    let newer = schema::latest() + 1;
    assert!(
        chain.contains(&format!(
            "version {newer}, newer than this kmsd knows ({})",
            schema::latest()
        )) && chain.contains(&format!("knows schema {newer} or newer")),
        "{chain}"
    );
    assert_eq!(applied_versions(&mut conn).await, before, "nothing changed");
}

#[tokio::test]
async fn peeking_reads_without_creating_anything() {
    let Some(factory) = PgFactory::new("peek").await else {
        return;
    };
    let settings = factory.settings();
    assert_eq!(peek_meta(&settings, "check".into()).await.unwrap(), None);
    let mut conn = factory.db.connect().await;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 'kmsd_%'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, 0, "a peek created tables");
    let store = factory.open().await;
    store.put_meta_if_absent("check", b"value").await.unwrap();
    assert_eq!(
        peek_meta(&settings, "check".into()).await.unwrap(),
        Some(b"value".to_vec())
    );
}

#[tokio::test]
async fn every_committed_change_is_announced_to_every_store() {
    let Some(factory) = PgFactory::new("announce").await else {
        return;
    };
    let writer = factory.open().await;
    let watcher = factory.open().await;
    let mut changes = watcher.watch_changes().expect("a shared store announces");
    let mut key = add_key(&*writer, "key-a").await;
    key.revision = 1;
    key.state = KeyState::Disabled;
    writer.update_key(&key).await.unwrap();
    writer
        .insert_alias(&alias("alias/a", "key-a"))
        .await
        .unwrap();
    // A refused write announces nothing.
    assert!(matches!(
        writer.update_key(&key).await,
        Err(StoreError::Conflict)
    ));
    assert!(writer.destroy_key("key-a", 1).await.unwrap());
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let change = tokio::time::timeout(Duration::from_secs(5), changes.recv())
            .await
            .expect("announced within 5 s")
            .unwrap();
        seen.push(change);
    }
    assert_eq!(
        seen[..3],
        [
            StoreChange::Key("key-a".into()),
            StoreChange::Key("key-a".into()),
            StoreChange::Alias("alias/a".into()),
        ]
    );
    // The destruction takes the alias with it, in one transaction.
    assert!(seen[3..].contains(&StoreChange::KeyDestroyed("key-a".into())));
    assert!(seen[3..].contains(&StoreChange::Alias("alias/a".into())));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), changes.recv())
            .await
            .is_err(),
        "nothing else was announced"
    );
}

#[tokio::test]
async fn secret_changes_are_announced_to_every_store() {
    let Some(factory) = PgFactory::new("announce_secrets").await else {
        return;
    };
    let writer = factory.open().await;
    let watcher = factory.open().await;
    let mut changes = watcher.watch_changes().expect("a shared store announces");
    let mut stored = secret("db/a");
    writer.insert_secret(&stored).await.unwrap();
    stored.revision = 1;
    writer.update_secret(&stored).await.unwrap();
    assert!(writer.delete_secret("db/a", 1).await.unwrap());
    for _ in 0..3 {
        let change = tokio::time::timeout(Duration::from_secs(1), changes.recv())
            .await
            .expect("announced within a second")
            .unwrap();
        assert_eq!(change, StoreChange::Secret("db/a".into()));
    }
}

#[tokio::test]
async fn one_store_at_a_time_holds_the_maintenance_lease() {
    let Some(factory) = PgFactory::new("lease").await else {
        return;
    };
    let (a, b) = (factory.open().await, factory.open().await);
    let lease = a.try_lease_maintenance().await.unwrap();
    assert!(lease.is_some());
    assert!(b.try_lease_maintenance().await.unwrap().is_none());
    assert!(
        a.try_lease_maintenance().await.unwrap().is_none(),
        "not even twice by one"
    );
    drop(lease);
    // Released when the lease's connection closes, a moment after the drop.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(lease) = b.try_lease_maintenance().await.unwrap() {
            drop(lease);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_terminated_connection_is_unavailable_or_replaced_never_a_hang() {
    let Some(factory) = PgFactory::new("terminate").await else {
        return;
    };
    let store = factory.open().await;
    let key = add_key(&*store, "key-a").await;
    let mut admin = factory.db.connect().await;
    for _ in 0..3 {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&mut admin)
        .await
        .unwrap();
        // The pool tests connections before use: the dead ones are replaced.
        let started = std::time::Instant::now();
        match store.get_key("key-a").await {
            Ok(found) => assert_eq!(found, Some(key.clone())),
            Err(err) => assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        store.check_available().await.unwrap();
    }
}

#[tokio::test]
async fn an_unreachable_database_fails_fast_as_unavailable() {
    // A port nothing listens on: refused at once, retried until the acquire timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut settings =
        PostgresSettings::new(&format!("postgres://kmsd@127.0.0.1:{port}/none")).unwrap();
    settings.timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let err = PgStore::open(&settings).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let err = peek_meta(&settings, "x".into()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
}

#[test]
fn settings_never_show_the_password() {
    let settings =
        PostgresSettings::new("postgres://kmsd:s3cret-pw@db.example:6432/keys?sslmode=verify-full")
            .unwrap();
    for shown in [format!("{settings}"), format!("{settings:?}")] {
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(shown.contains("db.example:6432/keys"), "{shown}");
    }
    assert!(PostgresSettings::new("mysql://x@y/z").is_err());
    let err = PostgresSettings::new("postgres://kmsd:s3cret-pw@db:notaport/keys").unwrap_err();
    assert!(!err.contains("s3cret-pw"), "{err}");
}

#[test]
fn test_urls_name_the_test_database() {
    use super::test_database::with_database;
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        with_database("postgres://u@h/test?sslmode=disable", "t1"),
        "postgres://u@h/t1?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "t1"), "postgres://u@h/t1");
}
