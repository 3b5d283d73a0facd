//! `--store-compare URL`: the PostgreSQL store beside the embedded one, in one run.
//!
//! Starts in-process servers (real gRPC over TCP on 127.0.0.1, in this process): one
//! over an embedded store in a temporary directory, one (then two) over a fresh
//! PostgreSQL database created on the server `URL` names and dropped at the end. For
//! each store it measures control-plane writes per second (CreateKey, 8 clients),
//! DescribeKey per second (8 clients), and the warm GenerateDataKeyPairWithoutPlaintext
//! EC_P256 p50 (sequential, pool warm: the key lookups are cached); then two PostgreSQL
//! replicas' combined EC_P256 rate against one (16 clients each run; the key pair
//! limit is per replica). Prints the figures; the servers share this process's cores.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kmsd::config::Config;
use kmsd::server::RunningServer;
use kmsd::store::PostgresSettings;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::net::TcpListener;
use tonic::transport::Channel;

use crate::report::Summary;
use kmsd::keypool::PoolConfig;
use kmsd_api::pb::crypto_service_client::CryptoServiceClient;
use kmsd_api::pb::key_management_service_client::KeyManagementServiceClient;
use kmsd_api::pb::*;

/// What one store measured.
struct StoreFigures {
    writes_per_s: f64,
    describes_per_s: f64,
    warm: Summary,
}

async fn start(config: Config) -> Result<(RunningServer, Channel), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let server = kmsd::server::start(config, listener)
        .await
        .map_err(|e| format!("starting a server: {e}"))?;
    let channel = Channel::from_shared(format!("http://{}", server.local_addr()))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((server, channel))
}

fn config(data_dir: &Path, root_key: &Path, postgres: Option<&str>) -> Result<Config, String> {
    let mut pool = PoolConfig::off();
    pool.depths
        .insert(kmsd::crypto::keygen::KeyPairSpec::EcP256, 16);
    Ok(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        root_key_file: Some(root_key.to_path_buf()),
        postgres: postgres.map(PostgresSettings::new).transpose()?,
        pool,
        ..Config::default()
    })
}

/// Calls `call` from `clients` tasks for `window`; returns successful calls per second.
async fn rate<F, Fut>(clients: usize, window: Duration, call: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (call, done, stop) = (call.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if call(i).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn pair(crypto: &mut CryptoServiceClient<Channel>, key_id: &str) -> bool {
    crypto
        .generate_data_key_pair_without_plaintext(GenerateDataKeyPairWithoutPlaintextRequest {
            key_id: key_id.to_owned(),
            key_pair_spec: "EC_P256".into(),
            key_format: "PEM".into(),
            ..Default::default()
        })
        .await
        .is_ok()
}

async fn measure(channel: &Channel, scale: f64) -> Result<StoreFigures, String> {
    let window = Duration::from_secs_f64(2.0 * scale);
    let writes_per_s = rate(8, window, {
        let channel = channel.clone();
        move |_| {
            let mut kms = KeyManagementServiceClient::new(channel.clone());
            async move { kms.create_key(CreateKeyRequest::default()).await.is_ok() }
        }
    })
    .await;
    let key_id = crate::create_key(channel, CreateKeyRequest::default()).await?;
    let describes_per_s = rate(8, window, {
        let (channel, key_id) = (channel.clone(), key_id.clone());
        move |_| {
            let (mut kms, key_id) = (
                KeyManagementServiceClient::new(channel.clone()),
                key_id.clone(),
            );
            async move {
                kms.describe_key(DescribeKeyRequest { key_id })
                    .await
                    .is_ok()
            }
        }
    })
    .await;
    let mut crypto = CryptoServiceClient::new(channel.clone());
    let mut samples = Vec::new();
    for _ in 0..((400.0 * scale) as usize).max(20) {
        // Paced so the pool refills between calls: a warm call every time.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let started = Instant::now();
        if !pair(&mut crypto, &key_id).await {
            return Err("GenerateDataKeyPairWithoutPlaintext failed".into());
        }
        samples.push(started.elapsed());
    }
    Ok(StoreFigures {
        writes_per_s,
        describes_per_s,
        warm: Summary::of(&samples),
    })
}

/// Successful EC_P256 calls per second from 16 clients spread over `channels`; a
/// throttled client waits the advised retry delay.
async fn pair_rate(channels: &[Channel], key_id: &str, scale: f64) -> f64 {
    let channels = channels.to_vec();
    let key_id = key_id.to_owned();
    rate(16, Duration::from_secs_f64(3.0 * scale), move |i| {
        let mut crypto = CryptoServiceClient::new(channels[i % channels.len()].clone());
        let key_id = key_id.clone();
        async move {
            let served = pair(&mut crypto, &key_id).await;
            if !served {
                // Throttled: back off as the server's RetryInfo says (and the SDKs do),
                // rather than spin on the cores both replicas share.
                tokio::time::sleep(kmsd::error::THROTTLE_RETRY_DELAY).await;
            }
            served
        }
    })
    .await
}

/// A database of its own on the server `url` names, dropped with it.
struct BenchDatabase {
    admin: String,
    name: String,
    url: String,
}

impl BenchDatabase {
    async fn create(admin: &str) -> Result<Self, String> {
        let name = format!("kmsd_bench_{}", std::process::id());
        let options = PgConnectOptions::from_str(admin).map_err(|e| e.to_string())?;
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(|e| format!("connecting to {admin}: {e}"))?;
        sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .map_err(|e| format!("creating {name}: {e}"))?;
        let _ = conn.close().await;
        let base = admin.split('?').next().unwrap_or(admin);
        let cut = base
            .rfind('/')
            .filter(|i| *i > base.find("://").unwrap_or(0) + 2);
        let url = match cut {
            Some(i) => format!("{}/{name}", &base[..i]),
            None => format!("{base}/{name}"),
        };
        Ok(Self {
            admin: admin.to_owned(),
            name,
            url,
        })
    }

    async fn drop_it(self) {
        if let Ok(options) = PgConnectOptions::from_str(&self.admin)
            && let Ok(mut conn) = PgConnection::connect_with(&options).await
        {
            let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            let _ = sqlx::Executor::execute(&mut conn, sql.as_str()).await;
        }
    }
}

/// Runs the comparison against the PostgreSQL server at `admin_url`; the report lines.
pub async fn compare(admin_url: &str, scale: f64) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("kmsd-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let root_key = dir.join("root.key");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&root_key)
            .map_err(|e| e.to_string())?;
        file.write_all(&[0x5a; 32]).map_err(|e| e.to_string())?;
    }
    let db = BenchDatabase::create(admin_url).await?;
    let outcome = async {
        let (embedded, channel) = start(config(&dir.join("data"), &root_key, None)?).await?;
        embedded.pool().wait_primed().await;
        eprintln!("kmsd-bench: store: embedded");
        let local = measure(&channel, scale).await?;
        embedded.shutdown().await.map_err(|e| e.to_string())?;

        let (a, channel_a) = start(config(&dir.join("a"), &root_key, Some(&db.url))?).await?;
        a.pool().wait_primed().await;
        eprintln!("kmsd-bench: store: PostgreSQL");
        let shared = measure(&channel_a, scale).await?;
        let (b, channel_b) = start(config(&dir.join("b"), &root_key, Some(&db.url))?).await?;
        b.pool().wait_primed().await;
        let key_id = crate::create_key(&channel_a, CreateKeyRequest::default()).await?;
        eprintln!("kmsd-bench: store: one replica against two");
        let one = pair_rate(std::slice::from_ref(&channel_a), &key_id, scale).await;
        let two = pair_rate(&[channel_a, channel_b], &key_id, scale).await;
        a.shutdown().await.map_err(|e| e.to_string())?;
        b.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(format!(
            "store                      embedded   PostgreSQL  ratio\n\
             CreateKey/s (8 clients)    {:>8.0}   {:>10.0}  {:>5.2}x\n\
             DescribeKey/s (8 clients)  {:>8.0}   {:>10.0}  {:>5.2}x\n\
             warm GDKPWP EC_P256 p50    {:>6.3}ms   {:>8.3}ms  {:>5.2}x  (target <= 1.20x)\n\
             EC_P256 calls/s, 16 clients: one PostgreSQL replica {:.0}, two replicas {:.0} ({:.2}x; \
             the key pair limit is per replica)\n",
            local.writes_per_s,
            shared.writes_per_s,
            shared.writes_per_s / local.writes_per_s.max(1e-9),
            local.describes_per_s,
            shared.describes_per_s,
            shared.describes_per_s / local.describes_per_s.max(1e-9),
            local.warm.p50_ms,
            shared.warm.p50_ms,
            shared.warm.p50_ms / local.warm.p50_ms.max(1e-9),
            one,
            two,
            two / one.max(1e-9),
        ))
    }
    .await;
    db.drop_it().await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}
