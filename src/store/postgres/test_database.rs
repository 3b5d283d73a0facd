//! A PostgreSQL database of its own for each test, so tests run in parallel.
//!
//! Tests read the server from `KMSD_TEST_POSTGRES_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`; `.ci/run` sets it). When it is set and
//! the server cannot be reached, the test fails, loudly. When it is unset, tests that
//! need PostgreSQL say on stderr that they did not run and pass: `cargo test` works on
//! a machine without PostgreSQL, and CI, which sets the variable, never skips.
//!
//! Shared by the unit tests and the end-to-end tests (which include this file by path):
//! it needs only sqlx, tokio and uuid. Each of the two uses part of it.
#![allow(dead_code)]

use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// The variable naming the test server.
pub const TEST_URL_VAR: &str = "KMSD_TEST_POSTGRES_URL";

/// A database created for one test and dropped (with any connection still open to
/// it) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL of the new database.
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// Creates an empty database named after `label` and a random suffix; `None`
    /// (after saying so on stderr) when [`TEST_URL_VAR`] is unset. Panics if the
    /// server cannot be reached or refuses.
    pub async fn create(label: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var(TEST_URL_VAR) else {
            eprintln!(
                "NOT RUN: {label} needs PostgreSQL; set {TEST_URL_VAR} (e.g. \
                 postgres://postgres@127.0.0.1:5432/test) to run it"
            );
            return None;
        };
        let label: String = label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(24)
            .collect::<String>()
            .to_ascii_lowercase();
        let name = format!("kmsd_{label}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = connect(&admin_url).await;
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|err| panic!("cannot create the test database {name}: {err}"));
        let _ = admin.close().await;
        Some(Self {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection to the server's maintenance database (`KMSD_TEST_POSTGRES_URL`'s),
    /// for what cannot be done from inside the test database (refusing it connections).
    pub async fn connect_admin(&self) -> PgConnection {
        connect(&self.admin_url).await
    }

    /// A connection to the test database, as its admin (for checks behind kmsd's back).
    pub async fn connect(&self) -> PgConnection {
        connect(&self.url).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside a test's runtime, which cannot block on a future: a thread
        // of its own with a runtime of its own drops the database.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let mut admin = PgConnection::connect(&admin_url).await?;
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!(
                "could not drop the test database {}: {dropped:?}",
                self.name
            );
        }
    }
}

async fn connect(url: &str) -> PgConnection {
    let options = PgConnectOptions::from_str(url)
        .unwrap_or_else(|err| panic!("{TEST_URL_VAR} is not a PostgreSQL URL: {err}"));
    PgConnection::connect_with(&options)
        .await
        .unwrap_or_else(|err| {
            panic!(
                "{TEST_URL_VAR} is set but PostgreSQL cannot be reached ({err}): start it, or \
             unset {TEST_URL_VAR} to leave out the tests that need it"
            )
        })
}

/// `url` with its database replaced by `database` (query parameters kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}
