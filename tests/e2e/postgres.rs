//! Many replicas over one PostgreSQL store, end to end: in-process servers over real
//! sockets sharing a database, a TCP proxy that cuts the database away, and the real
//! binary killed with SIGKILL. Each test has a database of its own
//! (`KMSD_TEST_POSTGRES_URL`, see `test_database.rs`); without the variable they say
//! NOT RUN and pass.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kmsd::clock::ManualClock;
use kmsd::config::Config;
use kmsd::store::PostgresSettings;
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;

use crate::support::pb::secrets_service_client::SecretsServiceClient;
use crate::support::pb::{
    CreateAliasRequest, CreateClientKeyRequest, CreateKeyRequest, CreateSecretRequest,
    DecryptRequest, DeleteSecretRequest, DescribeKeyRequest, DisableKeyRequest, EncryptRequest,
    GetSecretValueRequest, ListClientKeysRequest, ListKeyVersionsRequest, PutSecretValueRequest,
    UpdateAliasRequest,
};
use crate::support::*;

#[path = "../../src/store/postgres/test_database.rs"]
mod test_database;
use test_database::TestDatabase;

/// A test database and a root key file for its replicas.
struct Shared {
    db: TestDatabase,
    dir: TempDir,
}

impl Shared {
    async fn new(label: &str) -> Option<Self> {
        let db = TestDatabase::create(label).await?;
        let dir = temp_dir();
        write_root_key(&dir.path().join("root.key"), &[0x42; 32]);
        Some(Self { db, dir })
    }

    fn root_key(&self) -> std::path::PathBuf {
        self.dir.path().join("root.key")
    }

    /// A replica's config: the test config, this database at `url`, this root key.
    fn config(&self, url: &str) -> Config {
        let mut config = test_config(&self.dir.path().join("unused"));
        let mut postgres = PostgresSettings::new(url).unwrap();
        postgres.timeout = Duration::from_millis(500);
        config.postgres = Some(postgres);
        config.root_key_file = Some(self.root_key());
        config
    }

    async fn replica(&self, clock: &ManualClock) -> TestServer {
        try_start(self.config(&self.db.url), clock.clone())
            .await
            .expect("replica starts")
    }

    /// A replica that reaches the database through a [`Proxy`], to cut it away.
    async fn replica_through_proxy(&self) -> (Proxy, TestServer) {
        let options: sqlx::postgres::PgConnectOptions = self.db.url.parse().unwrap();
        let upstream = tokio::net::lookup_host((options.get_host(), options.get_port()))
            .await
            .unwrap()
            .next()
            .unwrap();
        let proxy = Proxy::to(upstream).await;
        let server = try_start(self.config(&via(&self.db.url, proxy.addr)), start_clock())
            .await
            .expect("starts through the proxy");
        (proxy, server)
    }
}

async fn encrypt(server: &TestServer, key_id: &str) -> Result<String, tonic::Status> {
    server
        .crypto()
        .encrypt(EncryptRequest {
            key_id: key_id.into(),
            plaintext: b"hello".to_vec(),
            ..Default::default()
        })
        .await
        .map(|response| response.into_inner().key_id)
}

/// Polls `check` until it holds; returns how long that took, failing past `within`.
async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn two_replicas_serve_the_same_keys_and_see_each_others_changes_at_once() {
    let Some(shared) = Shared::new("two_replicas").await else {
        return;
    };
    let clock = start_clock();
    let (a, b) = (shared.replica(&clock).await, shared.replica(&clock).await);
    let key = create_key(&a).await;
    let other = create_key(&a).await;
    assert_eq!(describe(&b, &key).await, describe(&a, &key).await);

    // A ciphertext made on one replica opens on the other.
    let sealed = a
        .crypto()
        .encrypt(EncryptRequest {
            key_id: key.clone(),
            plaintext: b"across".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let opened = b
        .crypto()
        .decrypt(DecryptRequest {
            key_id: sealed.key_id.clone(),
            ciphertext_blob: sealed.ciphertext_blob,
            iv: sealed.iv,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.plaintext, b"across");

    // B serves the key from its cache; A disables it: B refuses within 1 s.
    a.management()
        .create_alias(CreateAliasRequest {
            key_id: key.clone(),
            alias_name: "alias/moving".into(),
        })
        .await
        .unwrap();
    assert_eq!(encrypt(&b, &key).await.unwrap(), key);
    assert_eq!(encrypt(&b, "alias/moving").await.unwrap(), key);
    a.management()
        .disable_key(DisableKeyRequest {
            key_id: key.clone(),
        })
        .await
        .unwrap();
    let took = eventually(Duration::from_secs(1), async || {
        matches!(encrypt(&b, &key).await, Err(status) if status.code() == Code::FailedPrecondition)
    })
    .await;
    eprintln!("a disable on one replica stopped the other within {took:?}");

    // An alias moved on A points B at the other key.
    a.management()
        .update_alias(UpdateAliasRequest {
            key_id: other.clone(),
            alias_name: "alias/moving".into(),
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(1), async || {
        encrypt(&b, "alias/moving").await.ok().as_deref() == Some(other.as_str())
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_secret_put_on_one_replica_is_read_on_the_other_within_a_second() {
    let Some(shared) = Shared::new("secrets_replicas").await else {
        return;
    };
    let clock = start_clock();
    let (a, b) = (shared.replica(&clock).await, shared.replica(&clock).await);
    let mut secrets_a = SecretsServiceClient::new(a.channel.clone());
    secrets_a
        .create_secret(CreateSecretRequest {
            secret_name: "db/shared".into(),
            secret_data: "first".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let read = async |server: &TestServer| {
        server
            .crypto()
            .get_secret_value(GetSecretValueRequest {
                secret_name: "db/shared".into(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().secret_data.clone())
    };
    // B reads it (and caches it); A puts a new value: B serves it within a second.
    assert_eq!(read(&b).await.unwrap(), "first");
    secrets_a
        .put_secret_value(PutSecretValueRequest {
            secret_name: "db/shared".into(),
            version_id: "v2".into(),
            secret_data: "second".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let took = eventually(Duration::from_secs(1), async || {
        read(&b).await.ok().as_deref() == Some("second")
    })
    .await;
    eprintln!("a secret put on one replica was read on the other within {took:?}");
    // A forced delete on B: A refuses within a second.
    SecretsServiceClient::new(b.channel.clone())
        .delete_secret(DeleteSecretRequest {
            secret_name: "db/shared".into(),
            force_delete_without_recovery: true,
            ..Default::default()
        })
        .await
        .unwrap();
    eventually(
        Duration::from_secs(1),
        async || matches!(read(&a).await, Err(status) if status.code() == Code::NotFound),
    )
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn three_replicas_rotate_a_due_key_exactly_once() {
    let Some(shared) = Shared::new("three_replicas").await else {
        return;
    };
    let clock = start_clock();
    let replicas = [
        shared.replica(&clock).await,
        shared.replica(&clock).await,
        shared.replica(&clock).await,
    ];
    let key = create_key_with(
        &replicas[0],
        CreateKeyRequest {
            enable_automatic_rotation: true,
            rotation_interval: Some(prost_types::Duration {
                seconds: 7 * 86_400,
                nanos: 0,
            }),
            ..Default::default()
        },
    )
    .await;
    clock.advance(7 * DAY + Duration::from_secs(1));
    // Every replica passes several times (50 ms apart) once the key is due.
    for replica in &replicas {
        replica.wait_for_maintenance_passes(4).await;
    }
    for replica in &replicas {
        let versions = replica
            .management()
            .list_key_versions(ListKeyVersionsRequest {
                key_id: key.clone(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .key_versions;
        assert_eq!(versions.len(), 2, "exactly one rotation: {versions:?}");
    }
    let rotated: u64 = replicas
        .iter()
        .map(|r| r.server.maintenance_passes().borrow().1.rotated)
        .sum();
    assert_eq!(rotated, 1, "one replica rotated, once");
    for replica in replicas {
        replica.stop().await;
    }
}

// === a database that goes away ===

/// A TCP proxy in front of PostgreSQL that can cut every connection and refuse new
/// ones (as a database host that died would), then let them through again.
struct Proxy {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn to(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn({
            let up = up.clone();
            async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees the connection closed
                    }
                    let mut cuts = cuts.clone();
                    cuts.mark_unchanged();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cuts.changed() => {}
                        }
                    });
                }
            }
        });
        Self {
            addr,
            up,
            cut,
            task,
        }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `url` with its host and port replaced by `addr`.
fn via(url: &str, addr: std::net::SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, hostpath) = match rest.split_once('@') {
        Some((userinfo, hostpath)) => (format!("{userinfo}@"), hostpath),
        None => (String::new(), rest),
    };
    let path = hostpath.find(['/', '?']).map_or("", |i| &hostpath[i..]);
    format!("{scheme}://{userinfo}{addr}{path}")
}

async fn health(server: &TestServer) -> i32 {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    HealthClient::new(server.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

#[tokio::test]
async fn while_the_database_is_away_calls_fail_fast_health_says_so_and_it_recovers() {
    let Some(shared) = Shared::new("outage").await else {
        return;
    };
    let (proxy, server) = shared.replica_through_proxy().await;
    let key = create_key(&server).await;
    assert_eq!(health(&server).await, SERVING);

    proxy.down();
    // Calls that need the store fail with UNAVAILABLE, quickly, and change nothing.
    for _ in 0..3 {
        let started = Instant::now();
        let err = server
            .management()
            .describe_key(DescribeKeyRequest {
                key_id: key.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert_eq!(reason(&err), "Rejected.ServiceUnavailable");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    let err = server
        .management()
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    eventually(Duration::from_secs(5), async || {
        health(&server).await == NOT_SERVING
    })
    .await;

    proxy.up();
    eventually(Duration::from_secs(10), async || {
        health(&server).await == SERVING
    })
    .await;
    assert_eq!(describe(&server, &key).await.key_id, key);
    let mut conn = shared.db.connect().await;
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM kmsd_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, 1, "the refused CreateKey wrote nothing");
    server.stop().await;
}

#[tokio::test]
async fn terminated_backends_under_load_give_unavailable_or_success_never_a_hang() {
    let Some(shared) = Shared::new("terminate_load").await else {
        return;
    };
    let server = shared.replica(&start_clock()).await;
    let key = create_key(&server).await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (mut kms, key, stop) = (server.management(), key.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut unavailable) = (0u32, 0u32);
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    // Writes and reads: a new key, and the shared one described.
                    let outcome = if i % 2 == 0 {
                        kms.create_key(CreateKeyRequest::default()).await.map(drop)
                    } else {
                        kms.describe_key(DescribeKeyRequest {
                            key_id: key.clone(),
                        })
                        .await
                        .map(drop)
                    };
                    assert!(started.elapsed() < Duration::from_secs(3), "a call hung");
                    match outcome {
                        Ok(()) => ok += 1,
                        Err(status) if status.code() == Code::Unavailable => unavailable += 1,
                        Err(status) => panic!("neither success nor UNAVAILABLE: {status:?}"),
                    }
                }
                (ok, unavailable)
            })
        })
        .collect();
    let mut admin = shared.db.connect().await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&mut admin)
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut unavailable) = (0, 0);
    for client in clients {
        let (o, u) = client.await.unwrap();
        ok += o;
        unavailable += u;
    }
    eprintln!("under pg_terminate_backend: {ok} calls succeeded, {unavailable} UNAVAILABLE");
    assert!(ok > 0);
    // And it recovers: every call succeeds again.
    eventually(Duration::from_secs(5), async || {
        encrypt(&server, &key).await.is_ok()
    })
    .await;
    for _ in 0..20 {
        encrypt(&server, &key).await.unwrap();
    }
    server.stop().await;
}

/// A database that refuses new connections (`ALLOW_CONNECTIONS false`: SQLSTATE
/// 55000 on connect) is an outage, UNAVAILABLE / Rejected.ServiceUnavailable, not an
/// internal error.
#[tokio::test]
async fn a_database_refusing_connections_is_unavailable() {
    let Some(shared) = Shared::new("refuse_connections").await else {
        return;
    };
    let server = shared.replica(&start_clock()).await;
    create_key(&server).await;
    let mut admin = shared.db.connect_admin().await;
    let name = shared.db.name().to_owned();
    sqlx::raw_sql(&format!(
        "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&mut admin)
        .await
        .unwrap();
    for _ in 0..3 {
        let result = server
            .management()
            .create_key(CreateKeyRequest::default())
            .await;
        assert_error(result, Code::Unavailable, "Rejected.ServiceUnavailable");
    }
    sqlx::raw_sql(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"))
        .execute(&mut admin)
        .await
        .unwrap();
    eventually(Duration::from_secs(5), async || {
        server
            .management()
            .create_key(CreateKeyRequest::default())
            .await
            .is_ok()
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_replica_killed_mid_writes_loses_nothing_it_acknowledged() {
    use crate::support::process::KmsdProcess;
    let Some(shared) = Shared::new("sigkill").await else {
        return;
    };
    let root_key = shared.root_key().display().to_string();
    let replica = KmsdProcess::spawn(
        &shared.dir.path().join("unused"),
        &[
            "--store",
            &shared.db.url,
            "--root-key-file",
            &root_key,
            "--pool-depth",
            "0",
        ],
    );
    let channel = replica.channel().await;
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (channel, acknowledged) = (channel.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let mut kms =
                    pb::key_management_service_client::KeyManagementServiceClient::new(channel);
                // Until the replica dies under us.
                while let Ok(created) = kms.create_key(CreateKeyRequest::default()).await {
                    let key_id = created.into_inner().key_metadata.unwrap().key_id;
                    acknowledged.lock().unwrap().push(key_id);
                }
            })
        })
        .collect();
    eventually(Duration::from_secs(20), async || {
        acknowledged.lock().unwrap().len() >= 40
    })
    .await;
    replica.signal("KILL");
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let survivor = shared.replica(&start_clock()).await;
    for key_id in &acknowledged {
        assert_eq!(&describe(&survivor, key_id).await.key_id, key_id);
    }
    eprintln!(
        "{} acknowledged keys all survived the SIGKILL",
        acknowledged.len()
    );
    survivor.stop().await;
}

// === moving in, and the root key ===

fn path(path: &Path) -> String {
    path.display().to_string()
}

#[tokio::test]
async fn an_embedded_store_moves_in_once_and_a_foreign_database_is_refused() {
    let Some(shared) = Shared::new("migrate_store").await else {
        return;
    };
    let data = shared.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // An embedded server with a key, an alias and a ciphertext.
    let embedded = try_start(
        Config {
            root_key_file: Some(shared.root_key()),
            ..test_config(&data)
        },
        start_clock(),
    )
    .await
    .unwrap();
    let key = create_key(&embedded).await;
    embedded
        .management()
        .create_alias(CreateAliasRequest {
            key_id: key.clone(),
            alias_name: "alias/moved".into(),
        })
        .await
        .unwrap();
    let sealed = embedded
        .crypto()
        .encrypt(EncryptRequest {
            key_id: key.clone(),
            plaintext: b"moving".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // A client key of the HTTPS gateway moves in too (only its public key is stored).
    let client_key = embedded
        .management()
        .create_client_key(CreateClientKeyRequest {
            principal: "mover".into(),
            password: "moving-password".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .client_key_id;
    // And a secret, sealed under the key that moves with it.
    SecretsServiceClient::new(embedded.channel.clone())
        .create_secret(CreateSecretRequest {
            secret_name: "db/moving".into(),
            secret_data: "moving-secret".into(),
            encryption_key_id: key.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    embedded.stop().await;

    let migrate = [
        "migrate-store",
        "--data-dir",
        &path(&data),
        "--root-key-file",
        &path(&shared.root_key()),
        "--to",
        &shared.db.url,
    ];
    let (ok, out, err) = run_kmsd(&migrate);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("copied 1 keys (1 versions, 1 aliases), 1 client keys and 1 secrets"),
        "{out}"
    );
    let (ok, out, err) = run_kmsd(&migrate);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("copied 0 keys")
            && out.contains("0 client keys and 0 secrets")
            && out.contains("1 keys were there already"),
        "{out}"
    );

    let replica = shared.replica(&start_clock()).await;
    let opened = replica
        .crypto()
        .decrypt(DecryptRequest {
            key_id: sealed.key_id.clone(),
            ciphertext_blob: sealed.ciphertext_blob,
            iv: sealed.iv,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.plaintext, b"moving");
    assert_eq!(encrypt(&replica, "alias/moved").await.unwrap(), key);
    let secret = replica
        .crypto()
        .get_secret_value(GetSecretValueRequest {
            secret_name: "db/moving".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(secret.secret_data, "moving-secret");
    let listed = replica
        .management()
        .list_client_keys(ListClientKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed
            .client_keys
            .iter()
            .any(|k| k.client_key_id == client_key && k.principal == "mover"),
        "{listed:?}"
    );
    // The database's key changes: it no longer holds what the embedded store holds.
    replica
        .management()
        .disable_key(DisableKeyRequest {
            key_id: key.clone(),
        })
        .await
        .unwrap();
    replica.stop().await;
    let (ok, _, err) = run_kmsd(&migrate);
    assert!(!ok && err.contains("already holds key"), "{err}");

    // Another root key: refused before anything is read from the store for writing.
    let other = shared.dir.path().join("other.key");
    write_root_key(&other, &[0x99; 32]);
    let (ok, _, err) = run_kmsd(&[
        "migrate-store",
        "--data-dir",
        &path(&data),
        "--root-key-file",
        &path(&other),
        "--to",
        &shared.db.url,
    ]);
    assert!(!ok && err.contains("does not open the store"), "{err}");
}

#[tokio::test]
async fn the_root_key_of_a_postgresql_store_rotates_and_a_wrong_one_writes_nothing() {
    let Some(shared) = Shared::new("rotate_root").await else {
        return;
    };
    let replica = shared.replica(&start_clock()).await;
    let key = create_key(&replica).await;
    let sealed = replica
        .crypto()
        .encrypt(EncryptRequest {
            key_id: key.clone(),
            plaintext: b"kept".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let new = shared.dir.path().join("new.key");
    write_root_key(&new, &[0x77; 32]);
    let rotate = [
        "rotate-root-key",
        "--store",
        &shared.db.url,
        "--root-key-file",
        &path(&shared.root_key()),
        "--new-root-key-file",
        &path(&new),
    ];
    // Refused while a replica is connected.
    let (ok, _, err) = run_kmsd(&rotate);
    assert!(!ok && err.contains("stop every replica"), "{err}");
    replica.stop().await;
    // The stopped replica's sessions end as its connections close.
    let mut conn = shared.db.connect().await;
    let took = eventually(Duration::from_secs(10), async || {
        let sessions: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name LIKE 'kmsd/%'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        sessions == 0
    })
    .await;
    eprintln!("sessions closed {took:?} after stop");
    let (ok, out, err) = run_kmsd(&rotate);
    assert!(ok, "{out}{err}");
    assert!(out.contains("resealed 1 key versions"), "{out}");

    // The old key is refused, and the refusal wrote nothing.
    let snapshot = async |conn: &mut sqlx::PgConnection| -> Vec<Vec<u8>> {
        sqlx::query_scalar(
            "SELECT ciphertext FROM kmsd_versions UNION ALL SELECT value FROM kmsd_meta",
        )
        .fetch_all(conn)
        .await
        .unwrap()
    };
    let before = snapshot(&mut conn).await;
    let Err(err) = try_start(shared.config(&shared.db.url), start_clock()).await else {
        panic!("a replica with the old root key started");
    };
    assert!(err.to_string().contains("root key does not match"), "{err}");
    assert_eq!(snapshot(&mut conn).await, before);

    let mut config = shared.config(&shared.db.url);
    config.root_key_file = Some(new);
    let replica = try_start(config, start_clock()).await.unwrap();
    let opened = replica
        .crypto()
        .decrypt(DecryptRequest {
            key_id: sealed.key_id.clone(),
            ciphertext_blob: sealed.ciphertext_blob,
            iv: sealed.iv,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.plaintext, b"kept");
    replica.stop().await;
}

#[tokio::test]
async fn a_database_cut_under_load_writes_a_few_log_lines_not_one_per_call() {
    if !in_own_process(
        "postgres::a_database_cut_under_load_writes_a_few_log_lines_not_one_per_call",
    ) {
        return;
    }
    let Some(shared) = Shared::new("log_lines").await else {
        return;
    };
    let log = CapturedLog::install("kmsd=info");
    let (proxy, server) = shared.replica_through_proxy().await;
    let key = create_key(&server).await;

    proxy.down();
    let calls = (0..8).map(|_| {
        let mut management = server.management();
        let key = key.clone();
        tokio::spawn(async move {
            let mut failed = 0u64;
            for _ in 0..25 {
                let err = management
                    .describe_key(DescribeKeyRequest {
                        key_id: key.clone(),
                    })
                    .await
                    .unwrap_err();
                assert_eq!(err.code(), Code::Unavailable, "{err:?}");
                failed += 1;
            }
            failed
        })
    });
    let mut failed = 0;
    for call in calls {
        failed += call.await.unwrap();
    }
    assert_eq!(failed, 200);
    let full = log.lines_with("key store unavailable request_id=");
    assert!(
        (1..=3).contains(&full.len()),
        "{} full lines for {failed} failed calls: {full:#?}",
        full.len()
    );
    proxy.up();
    server.stop().await;
    // The rest are told in a summary line (written at shutdown at the latest).
    let summaries = log.lines_with("more calls failed the same way");
    let counted: u64 = summaries
        .iter()
        .filter_map(|line| {
            let at = line.find("count=")? + "count=".len();
            line[at..].split(' ').next()?.parse::<u64>().ok()
        })
        .sum();
    assert_eq!(
        counted + full.len() as u64,
        failed,
        "every failure is in a full line or a summary: {summaries:#?}"
    );
}

/// Releases `n` CreateKeyVersion calls on one key, spread over `replicas`, together;
/// returns how many went through. Every other answer must be ABORTED /
/// `Rejected.Throttling` with RetryInfo: a lost race is never an internal error.
async fn concurrent_rotations(replicas: &[&TestServer], key: &str, n: usize) -> usize {
    use tonic_types::StatusExt;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let mut management = replicas[i % replicas.len()].management();
            let (key, barrier) = (key.to_owned(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                management
                    .create_key_version(pb::CreateKeyVersionRequest {
                        key_id: key,
                        ..Default::default()
                    })
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::Aborted, "{status:?}");
                assert_eq!(reason(&status), "Rejected.Throttling");
                assert!(
                    status.get_details_retry_info().is_some(),
                    "RetryInfo: {status:?}"
                );
            }
        }
    }
    ok
}

async fn version_count(server: &TestServer, key: &str) -> usize {
    server
        .management()
        .list_key_versions(ListKeyVersionsRequest {
            key_id: key.to_owned(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key_versions
        .len()
}

#[tokio::test]
async fn concurrent_updates_of_one_key_succeed_or_are_retryable_never_internal() {
    // The embedded store: one server, 32 rotations at once.
    let server = start().await;
    let key = create_key(&server).await;
    let ok = concurrent_rotations(&[&server], &key, 32).await;
    assert_eq!(version_count(&server, &key).await, ok + 1);
    drop(server);

    // Two replicas over one PostgreSQL database.
    let Some(shared) = Shared::new("contention").await else {
        return;
    };
    let clock = start_clock();
    let (a, b) = (shared.replica(&clock).await, shared.replica(&clock).await);
    let key = create_key(&a).await;
    let ok = concurrent_rotations(&[&a, &b], &key, 32).await;
    assert!(ok > 0);
    assert_eq!(version_count(&b, &key).await, ok + 1, "the data is right");
    eprintln!("contention: {ok} of 32 rotations went through at once over two replicas");
}

#[tokio::test]
async fn replicas_racing_on_one_idempotency_token_make_one_key_and_answer_it_alike() {
    let Some(shared) = Shared::new("idempotency_race").await else {
        return;
    };
    let clock = start_clock();
    let (a, b) = (shared.replica(&clock).await, shared.replica(&clock).await);
    let n = 16;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let mut management = [&a, &b][i % 2].management();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                management
                    .create_key(CreateKeyRequest {
                        description: "raced".into(),
                        idempotency_token: "one-token".into(),
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner().key_metadata.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap().expect("every call answers"));
    }
    assert!(
        answers
            .iter()
            .all(|answer| answer.key_id == answers[0].key_id),
        "one key answered: {:?}",
        answers.iter().map(|a| &a.key_id).collect::<Vec<_>>()
    );
    for server in [&a, &b] {
        let keys = server
            .management()
            .list_keys(pb::ListKeysRequest {
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .keys;
        assert_eq!(keys.len(), 1, "exactly one key");
    }
    // Rotations and secrets race the same way.
    let key = answers[0].key_id.clone();
    let rotations: Vec<_> = (0..n)
        .map(|i| {
            let mut management = [&a, &b][i % 2].management();
            let key = key.clone();
            tokio::spawn(async move {
                management
                    .create_key_version(pb::CreateKeyVersionRequest {
                        key_id: key,
                        idempotency_token: "one-rotation".into(),
                    })
                    .await
                    .map(|r| r.into_inner().key_version.unwrap().key_version_id)
            })
        })
        .collect();
    let mut versions = Vec::new();
    for call in rotations {
        versions.push(call.await.unwrap().expect("every rotation answers"));
    }
    versions.dedup();
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!(version_count(&a, &key).await, 2);
    a.stop().await;
    b.stop().await;
}
