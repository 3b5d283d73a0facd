//! `kmsd-bench`: proves the key pair pool and the serving path, with every figure from
//! one run, side by side (see `docs/performance.md`).
//!
//! ```sh
//! cargo build --release --bin kmsd                  # the server it runs, first
//! cargo run --release -p kmsd-bench                 # start a server, measure, report
//! cargo run --release -p kmsd-bench -- --scale 0.3  # a quicker, noisier run
//! cargo run --release -p kmsd-bench -- --addr http://127.0.0.1:50051 --pid 1234
//! cargo run --release -p kmsd-bench -- --only-symmetric    # section 4b alone
//! cargo run --release -p kmsd-bench -- --only-gateway      # section 4d alone
//! cargo run --release -p kmsd-bench -- --store-compare postgres://postgres@127.0.0.1/test
//! cargo run --release -p kmsd-bench -- --only-signing      # section 4c alone
//! cargo run --release -p kmsd-bench -- --only-rsa-decrypt  # section 4f alone
//! cargo run --release -p kmsd-bench -- --only-saturation   # section 4g alone
//! ```
//!
//! By default it starts the real server, the `kmsd` binary built beside it, in a child
//! process on 127.0.0.1:0 with the default pool, so the server's memory and CPU are
//! its own; the bench reads the pool's state from the server's metrics, which lets the
//! warm-pool runs wait (untimed) until a pair is ready. It talks to the server with the
//! generated tonic client, over TCP, like any caller. Prints a table and writes a JSON
//! report.

#![forbid(unsafe_code)]

mod child;
mod gateway;
mod raw;
mod report;
mod rsa_decrypt;
mod saturation;
mod secrets;
mod store;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use kmsd::crypto::keygen::KeyPairSpec;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use child::ChildServer;
use kmsd_api::pb::crypto_service_client::CryptoServiceClient;
use kmsd_api::pb::key_management_service_client::KeyManagementServiceClient;
use kmsd_api::pb::*;
use report::{
    Ceiling, Drained, Floor, Memory, Meta, OpLatency, Report, SignLatency, SigningFloor, SpecSign,
    Startup, Summary, SymmetricFloor, Throttle, median,
};

/// Command line of the bench.
#[derive(Debug, Parser)]
#[command(
    name = "kmsd-bench",
    about = "Benchmark kmsd's key pair pool and serving path",
    long_about = "Benchmark kmsd's key pair pool and serving path.\n\n\
        Without --addr it runs the kmsd binary built beside it (target/release/kmsd for \
        `cargo run --release -p kmsd-bench`): build that first with \
        `cargo build --release --bin kmsd`."
)]
struct Cli {
    /// Benchmark a running server at this URL (e.g. http://127.0.0.1:50051) instead of
    /// starting one. Warm-pool runs are then paced by --warm-interval-ms.
    #[arg(long, value_name = "URL")]
    addr: Option<String>,
    /// With --addr: the server's process ID, to read its resident memory.
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// With --addr: pause between warm calls of one spec so its queue refills.
    #[arg(long, value_name = "MS", default_value_t = 600)]
    warm_interval_ms: u64,
    /// Multiplies every duration and sample count (0.2 for a quick look).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Where to write the JSON report ("-" for stdout).
    #[arg(long, value_name = "PATH", default_value = "target/kmsd-bench.json")]
    json: String,
    /// Concurrent clients in the throttle section.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// In the paced throttle run, each client calls once per this many ms.
    #[arg(long, value_name = "MS", default_value_t = 10)]
    pace_ms: u64,
    /// Measure only section 4b (Encrypt 4 KiB and GenerateDataKey 32 B against the
    /// trivial RPC), print it and exit; writes no JSON report.
    #[arg(long)]
    only_symmetric: bool,
    /// Measure only section 4d (EC_P256 through the HTTPS gateway against gRPC, and
    /// the signature verification cost), print it and exit; writes no JSON report.
    /// Needs the child server (not --addr).
    #[arg(long)]
    only_gateway: bool,
    /// Compare the PostgreSQL store (a fresh database on the server this URL names,
    /// dropped after) with the embedded one, in-process, print the figures and exit.
    #[arg(long, value_name = "URL")]
    store_compare: Option<String>,
    /// Measure only section 4c (Sign EC_P256 against the trivial RPC, RSA Sign against
    /// raw ring signing), print it and exit; writes no JSON report.
    #[arg(long)]
    only_signing: bool,
    /// Measure only section 4e (GetSecretValue of a 1 KiB secret against the trivial
    /// RPC), print it and exit; writes no JSON report.
    #[arg(long)]
    only_secrets: bool,
    /// Measure only section 4f (RSA_2048 OAEP Decrypt through kmsd against aws-lc-rs
    /// alone), print it and exit; writes no JSON report.
    #[arg(long)]
    only_rsa_decrypt: bool,
    /// Measure only section 4g (many concurrent streams against kmsd and a minimal
    /// tonic server), print it and exit; writes no JSON report. Needs the child server.
    #[arg(long)]
    only_saturation: bool,
    /// HTTP/2 connections in the saturation section.
    #[arg(long, value_name = "N", default_value_t = 4)]
    saturation_connections: usize,
    /// Calls in flight on each connection in the saturation section.
    #[arg(long, value_name = "N", default_value_t = 4)]
    saturation_streams: usize,
    /// Drive one call at saturation against --addr for --load-seconds, print the rate
    /// and exit (what bench/profile.sh profiles): health, describe-key, key-pair,
    /// encrypt or get-secret-value. A key pair load needs a server whose
    /// --keypair-concurrency admits every stream.
    #[arg(long, value_name = "CALL", requires = "addr")]
    load: Option<String>,
    /// How long --load drives its call.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    load_seconds: f64,
}

fn main() -> std::process::ExitCode {
    // The saturation section's floor: this executable as a minimal tonic server.
    if std::env::args().nth(1).as_deref() == Some(saturation::FLOOR_SERVER_ARG) {
        return saturation::run_floor_server();
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kmsd-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kmsd-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

// === the operations ===

/// The four Generate operations of the data key pair API.
#[derive(Clone, Copy, Debug)]
enum Op {
    Generate,
    GenerateWithoutPlaintext,
    AdvanceGenerate,
    AdvanceGenerateWithoutPlaintext,
}

impl Op {
    const ALL: [Op; 4] = [
        Op::Generate,
        Op::GenerateWithoutPlaintext,
        Op::AdvanceGenerate,
        Op::AdvanceGenerateWithoutPlaintext,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Generate => "GenerateDataKeyPair",
            Op::GenerateWithoutPlaintext => "GenerateDataKeyPairWithoutPlaintext",
            Op::AdvanceGenerate => "AdvanceGenerateDataKeyPair",
            Op::AdvanceGenerateWithoutPlaintext => "AdvanceGenerateDataKeyPairWithoutPlaintext",
        }
    }

    /// Makes the call; the response is dropped (its private key zeroizes).
    async fn call(
        self,
        client: &mut CryptoServiceClient<Channel>,
        key_id: &str,
        spec: KeyPairSpec,
    ) -> Result<(), tonic::Status> {
        let key_id = key_id.to_owned();
        let key_pair_spec = spec.as_str().to_owned();
        let key_format = "DER".to_owned();
        match self {
            Op::Generate => client
                .generate_data_key_pair(GenerateDataKeyPairRequest {
                    key_id,
                    key_pair_spec,
                    key_format,
                    ..Default::default()
                })
                .await
                .map(drop),
            Op::GenerateWithoutPlaintext => client
                .generate_data_key_pair_without_plaintext(
                    GenerateDataKeyPairWithoutPlaintextRequest {
                        key_id,
                        key_pair_spec,
                        key_format,
                        ..Default::default()
                    },
                )
                .await
                .map(drop),
            Op::AdvanceGenerate => client
                .advance_generate_data_key_pair(AdvanceGenerateDataKeyPairRequest {
                    key_id,
                    key_pair_spec,
                    key_format,
                    aad: Vec::new(),
                })
                .await
                .map(drop),
            Op::AdvanceGenerateWithoutPlaintext => client
                .advance_generate_data_key_pair_without_plaintext(
                    AdvanceGenerateDataKeyPairWithoutPlaintextRequest {
                        key_id,
                        key_pair_spec,
                        key_format,
                        aad: Vec::new(),
                    },
                )
                .await
                .map(drop),
        }
    }
}

/// How long or how many, scaled by `--scale`.
#[derive(Clone, Copy, Debug)]
struct Budget {
    scale: f64,
}

impl Budget {
    fn secs(self, s: f64) -> Duration {
        Duration::from_secs_f64((s * self.scale).max(0.05))
    }

    fn count(self, n: usize) -> usize {
        ((n as f64 * self.scale).round() as usize).max(5)
    }

    /// Raw generation time per measurement (one thread, then all cores).
    fn raw(self, spec: KeyPairSpec) -> Duration {
        self.secs(match spec {
            KeyPairSpec::Rsa2048 => 4.0,
            KeyPairSpec::Rsa3072 => 8.0,
            KeyPairSpec::Rsa4096 => 15.0,
            _ => 1.0,
        })
    }

    /// Warm samples per operation.
    fn warm(self, spec: KeyPairSpec) -> usize {
        self.count(match spec {
            KeyPairSpec::Rsa2048 => 100,
            KeyPairSpec::Rsa3072 => 40,
            KeyPairSpec::Rsa4096 => 25,
            _ => 400,
        })
    }

    /// Drained-rate time.
    fn drained(self, spec: KeyPairSpec) -> Duration {
        self.secs(match spec {
            KeyPairSpec::Rsa2048 => 8.0,
            KeyPairSpec::Rsa3072 => 15.0,
            KeyPairSpec::Rsa4096 => 25.0,
            _ => 1.0,
        })
    }
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The server under test: the bench's own child, or one given with `--addr`.
struct Target {
    child: Option<ChildServer>,
    pid: Option<u32>,
    warm_interval: Duration,
}

impl Target {
    /// Waits (untimed) until `spec` has a pair ready, or paces when we cannot see.
    async fn wait_warm(&self, spec: KeyPairSpec) -> Result<(), String> {
        match &self.child {
            Some(child) => child.wait_ready(spec, 1).await,
            None => {
                tokio::time::sleep(self.warm_interval).await;
                Ok(())
            }
        }
    }

    /// Waits until every queue is full (or a pause with `--addr`).
    async fn wait_full(&self) -> Result<(), String> {
        match &self.child {
            Some(child) => child.wait_ms("wait-full").await.map(drop),
            None => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            }
        }
    }

    /// Resident and peak KiB of the server, if it can be read.
    fn rss(&self) -> Option<(u64, u64)> {
        let pid = self.pid?;
        child::rss_kib(&PathBuf::from(format!("/proc/{pid}/status")))
    }
}

async fn connect(url: &str) -> Result<Channel, String> {
    Channel::from_shared(url.to_owned())
        .map_err(|e| format!("{url}: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))
}

async fn run(cli: Cli) -> Result<(), String> {
    if let Some(url) = &cli.store_compare {
        print!("{}", store::compare(url, cli.scale).await?);
        return Ok(());
    }
    let run_started = Instant::now();
    let budget = Budget { scale: cli.scale };
    let (connections, streams) = (cli.saturation_connections, cli.saturation_streams);
    if connections == 0 || streams == 0 {
        return Err("--saturation-connections and --saturation-streams must be at least 1".into());
    }
    if let (Some(call), Some(url)) = (&cli.load, &cli.addr) {
        let length = Duration::from_secs_f64(cli.load_seconds.max(0.1));
        print!(
            "{}",
            saturation::load(url, call, connections, streams, length).await?
        );
        return Ok(());
    }
    if cli.only_saturation {
        if cli.addr.is_some() {
            return Err("--only-saturation starts servers of its own: drop --addr".into());
        }
        eprintln!("kmsd-bench: 4g. the serving path at saturation");
        let section = saturation::saturation(budget, connections, streams).await?;
        print_section(&section.lines(), &section.targets());
        return Ok(());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut report = Report {
        meta: Meta {
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
            cores,
            load_before: load_average(),
            scale: cli.scale,
            ..Default::default()
        },
        ..Default::default()
    };

    // --- the server ---
    let (mut target, url) = match &cli.addr {
        Some(addr) => {
            report.meta.server = addr.clone();
            let target = Target {
                child: None,
                pid: cli.pid,
                warm_interval: Duration::from_millis(cli.warm_interval_ms),
            };
            (target, addr.clone())
        }
        None => {
            let child = ChildServer::spawn(&child::kmsd_binary()?)?;
            let primed_ms = child.wait_ms("wait-primed").await?;
            let full_ms = child.wait_ms("wait-full").await?;
            report.startup = Some(Startup {
                listening_ms: child.listening_ms,
                primed_ms,
                full_ms,
            });
            report.meta.server = "child process".into();
            report.meta.pool = child.pool_description(cores).await?;
            let url = format!("http://{}", child.addr);
            let pid = Some(child.pid());
            let target = Target {
                child: Some(child),
                pid,
                warm_interval: Duration::ZERO,
            };
            (target, url)
        }
    };
    eprintln!("kmsd-bench: server at {url}");
    let idle_rss = target.rss();
    let channel = connect(&url).await?;
    let mut crypto = CryptoServiceClient::new(channel.clone());
    let key_id = create_key(
        &channel,
        CreateKeyRequest {
            description: "kmsd-bench".into(),
            ..Default::default()
        },
    )
    .await?;

    if cli.only_gateway {
        let child = target
            .child
            .as_ref()
            .ok_or("--only-gateway needs the child server (no --addr)")?;
        target.wait_full().await?;
        eprintln!("kmsd-bench: 4d. the HTTPS gateway against gRPC");
        let (https, ca) = child.https();
        let section =
            gateway::gateway_floor(&channel, &https, &ca, &key_id, budget.secs(0.75)).await?;
        if let Some(child) = target.child {
            child.stop();
        }
        print_section(&section.lines(), &section.targets());
        return Ok(());
    }

    if cli.only_symmetric {
        // A quiet server: the pool's workers idle once their queues are full.
        target.wait_full().await?;
        eprintln!("kmsd-bench: 4b. symmetric data plane against the trivial RPC");
        let symmetric = symmetric_floor(&channel, &key_id, budget).await?;
        if let Some(child) = target.child {
            child.stop();
        }
        print_section(&symmetric.lines(), &symmetric.targets());
        return Ok(());
    }

    if cli.only_secrets {
        target.wait_full().await?;
        eprintln!("kmsd-bench: 4e. GetSecretValue against the trivial RPC");
        let section = secrets::secrets_floor(&channel, budget).await?;
        if let Some(child) = target.child {
            child.stop();
        }
        print_section(&section.lines(), &section.targets());
        return Ok(());
    }

    if cli.only_rsa_decrypt {
        target.wait_full().await?;
        eprintln!("kmsd-bench: 4f. RSA_2048 OAEP Decrypt against aws-lc-rs alone");
        let section = rsa_decrypt::rsa_decrypt_latency(&channel, budget).await?;
        if let Some(child) = target.child {
            child.stop();
        }
        print_section(&section.lines(), &section.targets());
        return Ok(());
    }

    if cli.only_signing {
        target.wait_full().await?;
        eprintln!("kmsd-bench: 4c. Sign against the trivial RPC and raw ring signing");
        let signing = signing_floor(&channel, budget).await?;
        if let Some(child) = target.child {
            child.stop();
        }
        print_section(&signing.lines(), &signing.targets());
        return Ok(());
    }

    // --- 1. the ceiling ---
    eprintln!("kmsd-bench: 1. raw key generation and crypto steps");
    let mut ceiling = Ceiling::default();
    for spec in KeyPairSpec::DATA_KEY_PAIRS {
        let per = budget.raw(spec);
        let k = tokio::task::spawn_blocking(move || raw::keygen_ceiling(spec, cores, per))
            .await
            .map_err(|e| e.to_string())??;
        ceiling.keygen.push(k);
    }
    let step_budget = budget.secs(0.3);
    ceiling.steps = tokio::task::spawn_blocking(move || raw::step_costs(step_budget))
        .await
        .map_err(|e| e.to_string())??;
    let scratch = std::env::temp_dir().join(format!("kmsd-bench-path-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let path_steps = raw::data_path(&scratch, step_budget).await;
    let _ = std::fs::remove_dir_all(&scratch);
    ceiling.steps.extend(path_steps?);
    let raw_of = |spec: KeyPairSpec| {
        ceiling
            .keygen
            .iter()
            .find(|k| k.spec == spec.as_str())
            .cloned()
            .unwrap_or_default()
    };

    // --- 2. warm pool, sequential ---
    eprintln!("kmsd-bench: 2. sequential calls with the pool warm");
    target.wait_full().await?;
    for spec in KeyPairSpec::DATA_KEY_PAIRS {
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); Op::ALL.len()];
        for _ in 0..budget.warm(spec) {
            for (i, op) in Op::ALL.into_iter().enumerate() {
                target.wait_warm(spec).await?;
                let started = Instant::now();
                op.call(&mut crypto, &key_id, spec)
                    .await
                    .map_err(|s| format!("{} {spec}: {s:?}", op.name()))?;
                samples[i].push(started.elapsed());
            }
        }
        for (op, s) in Op::ALL.into_iter().zip(samples) {
            let latency = Summary::of(&s);
            report.warm.push(OpLatency {
                spec: spec.as_str().into(),
                operation: op.name().into(),
                calls_per_s: latency.per_second(),
                speedup_vs_raw: raw_of(spec).single_ms / latency.p50_ms.max(1e-9),
                latency,
            });
        }
    }
    for spec in [KeyPairSpec::Rsa4096, KeyPairSpec::EcP256] {
        report
            .decrypt
            .extend(decrypt_rows(&mut crypto, &key_id, spec, budget.count(300)).await?);
    }

    // --- 4. the floor: trivial RPC vs EC_P256, alternating rounds ---
    eprintln!("kmsd-bench: 4. trivial RPC against EC_P256");
    report.floor = floor(&channel, &key_id, budget).await?;
    eprintln!("kmsd-bench: 4b. symmetric data plane against the trivial RPC");
    report.symmetric = Some(symmetric_floor(&channel, &key_id, budget).await?);
    eprintln!("kmsd-bench: 4c. Sign against the trivial RPC and raw ring signing");
    report.signing = Some(signing_floor(&channel, budget).await?);
    eprintln!("kmsd-bench: 4e. GetSecretValue against the trivial RPC");
    report.secrets = Some(secrets::secrets_floor(&channel, budget).await?);
    eprintln!("kmsd-bench: 4f. RSA_2048 OAEP Decrypt against aws-lc-rs alone");
    report.rsa_decrypt = Some(rsa_decrypt::rsa_decrypt_latency(&channel, budget).await?);
    if let Some(child) = &target.child {
        eprintln!("kmsd-bench: 4d. the HTTPS gateway against gRPC");
        let (https, ca) = child.https();
        report.gateway =
            Some(gateway::gateway_floor(&channel, &https, &ca, &key_id, budget.secs(0.75)).await?);
    }

    // --- 6. memory over 10,000 calls ---
    let mut memory = None;
    if let Some((before, _)) = target.rss() {
        eprintln!("kmsd-bench: 6. resident memory over 10,000 calls");
        let calls = 10_000;
        many_calls(&mut crypto, &key_id, calls).await?;
        let (after, _) = target.rss().unwrap_or_default();
        memory = Some(Memory {
            idle_mib: idle_rss.map_or(0.0, |(r, _)| mib(r)),
            before_mib: mib(before),
            calls,
            after_mib: mib(after),
            growth_mib: mib(after) - mib(before),
            ..Default::default()
        });
    }

    // --- 3. drained pool ---
    eprintln!("kmsd-bench: 3. sustained rate with the pool drained");
    for spec in KeyPairSpec::DATA_KEY_PAIRS {
        let d = drained(&target, &mut crypto, &key_id, spec, budget, cores).await?;
        report.drained.push(d);
    }

    // --- 5. the throttle under fire ---
    eprintln!("kmsd-bench: 5. throttle under fire");
    target.wait_full().await?;
    let alone = report
        .warm
        .iter()
        .find(|w| w.spec == "EC_P256" && w.operation == Op::GenerateWithoutPlaintext.name())
        .map(|w| w.latency.clone())
        .unwrap_or_default();
    let fire = budget.secs(5.0);
    let pace = Some(Duration::from_millis(cli.pace_ms));
    let (n, pid) = (cli.clients, target.pid);
    let mut paced = under_fire(&url, &key_id, n, fire, pace, false, alone.clone(), pid).await?;
    target.wait_full().await?;
    let control = under_fire(&url, &key_id, n, fire, pace, true, alone.clone(), pid).await?;
    paced.admitted_vs_control = paced.admitted.p50_ms / control.admitted.p50_ms.max(1e-9);
    paced.control_admitted = control.admitted;
    report.throttle = paced;
    target.wait_full().await?;
    report.throttle_saturated = under_fire(&url, &key_id, n, fire, None, false, alone, pid).await?;

    if let (Some(m), Some((end, peak))) = (memory.as_mut(), target.rss()) {
        m.end_mib = mib(end);
        m.peak_mib = mib(peak);
    }
    report.memory = memory;
    if let Some(child) = target.child.take() {
        // Its own servers, with the main child stopped so they have the machine.
        child.stop();
        eprintln!("kmsd-bench: 4g. the serving path at saturation");
        report.saturation = Some(saturation::saturation(budget, connections, streams).await?);
    }
    report.meta.load_after = load_average();
    report.meta.duration_s = run_started.elapsed().as_secs_f64();
    report.ceiling = ceiling;
    report.evaluate();
    if let Some(child) = target.child {
        child.stop();
    }

    print!("{}", report.table());
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    if cli.json == "-" {
        println!("{json}");
    } else {
        let path = PathBuf::from(&cli.json);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("\nJSON report: {}", path.display());
    }
    Ok(())
}

/// Decrypt and AdvanceDecrypt of one private key of `spec`, `n` times each.
async fn decrypt_rows(
    crypto: &mut CryptoServiceClient<Channel>,
    key_id: &str,
    spec: KeyPairSpec,
    n: usize,
) -> Result<Vec<OpLatency>, String> {
    let plain = crypto
        .generate_data_key_pair_without_plaintext(GenerateDataKeyPairWithoutPlaintextRequest {
            key_id: key_id.into(),
            key_pair_spec: spec.as_str().into(),
            key_format: "DER".into(),
            ..Default::default()
        })
        .await
        .map_err(|s| format!("{s:?}"))?
        .into_inner();
    let advance = crypto
        .advance_generate_data_key_pair_without_plaintext(
            AdvanceGenerateDataKeyPairWithoutPlaintextRequest {
                key_id: key_id.into(),
                key_pair_spec: spec.as_str().into(),
                key_format: "DER".into(),
                aad: Vec::new(),
            },
        )
        .await
        .map_err(|s| format!("{s:?}"))?
        .into_inner();
    let (mut d, mut ad) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let started = Instant::now();
        crypto
            .decrypt(DecryptRequest {
                key_id: key_id.into(),
                ciphertext_blob: plain.private_key_ciphertext_blob.clone(),
                iv: plain.iv.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| format!("Decrypt: {s:?}"))?;
        d.push(started.elapsed());
        let started = Instant::now();
        crypto
            .advance_decrypt(AdvanceDecryptRequest {
                ciphertext_blob: advance.private_key_ciphertext_blob.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| format!("AdvanceDecrypt: {s:?}"))?;
        ad.push(started.elapsed());
    }
    Ok([("Decrypt", d), ("AdvanceDecrypt", ad)]
        .into_iter()
        .map(|(op, s)| {
            let latency = Summary::of(&s);
            OpLatency {
                spec: spec.as_str().into(),
                operation: op.into(),
                calls_per_s: latency.per_second(),
                speedup_vs_raw: 0.0,
                latency,
            }
        })
        .collect())
}

/// Alternating rounds of back-to-back Health/Check and EC_P256
/// GenerateDataKeyPairWithoutPlaintext on the same connection.
async fn floor(channel: &Channel, key_id: &str, budget: Budget) -> Result<Floor, String> {
    let mut health = HealthClient::new(channel.clone());
    let mut crypto = CryptoServiceClient::new(channel.clone());
    let round = budget.secs(0.75);
    let (mut trivial, mut ec, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..6 {
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < round {
            health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map_err(|s| format!("Health/Check: {s:?}"))?;
            n += 1;
        }
        let t = f64::from(n) / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < round {
            Op::GenerateWithoutPlaintext
                .call(&mut crypto, key_id, KeyPairSpec::EcP256)
                .await
                .map_err(|s| format!("EC_P256: {s:?}"))?;
            n += 1;
        }
        let e = f64::from(n) / started.elapsed().as_secs_f64();
        trivial.push(t);
        ec.push(e);
        ratios.push(e / t);
    }
    let (t, e) = (median(&trivial), median(&ec));
    Ok(Floor {
        trivial_rpc: "grpc.health.v1.Health/Check".into(),
        trivial_per_s: t,
        ec_p256_per_s: e,
        ratio: e / t,
        round_ratios: ratios,
    })
}

/// Alternating rounds of back-to-back Health/Check, Encrypt of 4 KiB and GenerateDataKey
/// of 32 bytes on the same connection; each ratio is taken against the trivial rate of
/// its own round, then the median over rounds.
async fn symmetric_floor(
    channel: &Channel,
    key_id: &str,
    budget: Budget,
) -> Result<SymmetricFloor, String> {
    let mut health = HealthClient::new(channel.clone());
    let mut crypto = CryptoServiceClient::new(channel.clone());
    let round = budget.secs(0.75);
    let plaintext = vec![0x5a; 4096];
    let (mut trivial, mut encrypt, mut data_key) = (Vec::new(), Vec::new(), Vec::new());
    let (mut encrypt_ratios, mut data_key_ratios) = (Vec::new(), Vec::new());
    for _ in 0..6 {
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < round {
            health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map_err(|s| format!("Health/Check: {s:?}"))?;
            n += 1;
        }
        let t = f64::from(n) / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < round {
            crypto
                .encrypt(EncryptRequest {
                    key_id: key_id.to_owned(),
                    plaintext: plaintext.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|s| format!("Encrypt: {s:?}"))?;
            n += 1;
        }
        let e = f64::from(n) / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < round {
            crypto
                .generate_data_key(GenerateDataKeyRequest {
                    key_id: key_id.to_owned(),
                    number_of_bytes: 32,
                    ..Default::default()
                })
                .await
                .map_err(|s| format!("GenerateDataKey: {s:?}"))?;
            n += 1;
        }
        let d = f64::from(n) / started.elapsed().as_secs_f64();
        trivial.push(t);
        encrypt.push(e);
        data_key.push(d);
        encrypt_ratios.push(e / t);
        data_key_ratios.push(d / t);
    }
    Ok(SymmetricFloor {
        trivial_rpc: "grpc.health.v1.Health/Check".into(),
        trivial_per_s: median(&trivial),
        encrypt_4k_per_s: median(&encrypt),
        data_key_per_s: median(&data_key),
        encrypt_ratio: median(&encrypt_ratios),
        data_key_ratio: median(&data_key_ratios),
    })
}

/// Creates the master key `request` describes and returns its ID.
async fn create_key(channel: &Channel, request: CreateKeyRequest) -> Result<String, String> {
    let what = format!("CreateKey {} {}", request.key_spec, request.key_usage);
    KeyManagementServiceClient::new(channel.clone())
        .create_key(request)
        .await
        .map_err(|s| format!("{what}: {s:?}"))?
        .into_inner()
        .key_metadata
        .map(|metadata| metadata.key_id)
        .ok_or_else(|| format!("{what} returned no metadata"))
}

/// Creates a master key of `spec` (SIGN/VERIFY) and returns its ID.
async fn create_signing_key(channel: &Channel, spec: &str) -> Result<String, String> {
    create_key(
        channel,
        CreateKeyRequest {
            key_spec: spec.into(),
            description: "kmsd-bench signing".into(),
            ..Default::default()
        },
    )
    .await
}

/// Section 4c. Sign with an EC_P256 key against the trivial RPC in alternating rounds
/// (as section 4), the same for ML_DSA_65 and ED25519 keys, then RSA_2048 and RSA_3072
/// Sign latency against ring signing the same 256-byte message in this process with a
/// key of the same size, again in alternating rounds, so both see the same machine;
/// last the Sign handler in process against the library alone (EC_P256, ML_DSA_65,
/// ED25519).
async fn signing_floor(channel: &Channel, budget: Budget) -> Result<SigningFloor, String> {
    const MESSAGE: [u8; 256] = [0x42; 256];
    let mut health = HealthClient::new(channel.clone());
    let mut crypto = CryptoServiceClient::new(channel.clone());
    let sign = |key_id: &str, algorithm: &str| SignRequest {
        key_id: key_id.to_owned(),
        algorithm: algorithm.to_owned(),
        message: MESSAGE.to_vec(),
        message_type: "RAW".into(),
        ..Default::default()
    };
    let ec_key = create_signing_key(channel, "EC_P256").await?;
    let round = budget.secs(0.75);
    let ec = alternate_with_trivial(
        &mut health,
        &mut crypto,
        sign(&ec_key, "ECDSA_SHA_256"),
        6,
        round,
    )
    .await?;
    // ML-DSA-65 and Ed25519 (issue 28): the same rounds, then the library alone below.
    let mut post_quantum = Vec::new();
    for (spec, algorithm) in [
        (KeyPairSpec::MlDsa65, "ML_DSA"),
        (KeyPairSpec::Ed25519, "ED25519"),
    ] {
        let key_id = create_signing_key(channel, spec.as_str()).await?;
        let rates =
            alternate_with_trivial(&mut health, &mut crypto, sign(&key_id, algorithm), 4, round)
                .await?;
        post_quantum.push((spec, algorithm, rates));
    }

    let mut rsa = Vec::new();
    for (spec, samples) in [
        (KeyPairSpec::Rsa2048, budget.count(150)),
        (KeyPairSpec::Rsa3072, budget.count(60)),
    ] {
        let key_id = create_signing_key(channel, spec.as_str()).await?;
        let algorithm = "RSA_PSS_SHA_256";
        crypto
            .sign(sign(&key_id, algorithm))
            .await
            .map_err(|s| format!("Sign {spec}: {s:?}"))?;
        let pair = tokio::task::spawn_blocking(move || kmsd::crypto::keygen::generate(spec))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let ring_key = std::sync::Arc::new(
            ring::signature::RsaKeyPair::from_pkcs8(pair.private_key_der())
                .map_err(|e| format!("ring {spec}: {e}"))?,
        );
        let (mut rpc, mut raw) = (Vec::new(), Vec::new());
        let per_round = samples.div_ceil(3);
        for _ in 0..3 {
            let key = std::sync::Arc::clone(&ring_key);
            let round_raw = tokio::task::spawn_blocking(move || {
                let rng = ring::rand::SystemRandom::new();
                let mut signature = vec![0u8; key.public().modulus_len()];
                (0..per_round)
                    .map(|_| {
                        let started = Instant::now();
                        key.sign(
                            &ring::signature::RSA_PSS_SHA256,
                            &rng,
                            &MESSAGE,
                            &mut signature,
                        )
                        .map(|()| started.elapsed())
                        .map_err(|e| format!("ring sign: {e}"))
                    })
                    .collect::<Result<Vec<_>, String>>()
            })
            .await
            .map_err(|e| e.to_string())??;
            raw.extend(round_raw);
            for _ in 0..per_round {
                let started = Instant::now();
                crypto
                    .sign(sign(&key_id, algorithm))
                    .await
                    .map_err(|s| format!("Sign {spec}: {s:?}"))?;
                rpc.push(started.elapsed());
            }
        }
        let (rpc, raw) = (Summary::of(&rpc), Summary::of(&raw));
        rsa.push(SignLatency {
            spec: spec.as_str().into(),
            algorithm: algorithm.into(),
            overhead_ms: rpc.p50_ms - raw.p50_ms,
            rpc,
            raw,
        });
    }
    let scratch = std::env::temp_dir().join(format!("kmsd-bench-sign-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let in_process = raw::sign_path(&scratch, budget.secs(0.5)).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let in_process = in_process?;
    let of = |spec| {
        in_process
            .iter()
            .find(|m| m.spec == spec)
            .copied()
            .ok_or_else(|| format!("no in-process Sign of {spec}"))
    };
    let ec_in_process = of(KeyPairSpec::EcP256)?;
    let post_quantum = post_quantum
        .into_iter()
        .map(|(spec, algorithm, rates)| {
            let alone = of(spec)?;
            Ok(SpecSign {
                spec: spec.as_str().into(),
                algorithm: algorithm.into(),
                sign_per_s: rates.sign_per_s,
                trivial_per_s: rates.trivial_per_s,
                ratio: rates.ratio,
                handler_us: alone.handler_us,
                library_us: alone.library_us,
                library_ratio: alone.handler_us / alone.library_us,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(SigningFloor {
        trivial_rpc: "grpc.health.v1.Health/Check".into(),
        trivial_per_s: ec.trivial_per_s,
        sign_ec_p256_per_s: ec.sign_per_s,
        ratio: ec.ratio,
        round_ratios: ec.round_ratios,
        in_process_sign_us: ec_in_process.handler_us,
        ring_p256_sign_us: ec_in_process.library_us,
        rsa,
        post_quantum,
    })
}

/// Rates of `request` (Sign) and of the trivial RPC, in `rounds` alternating rounds of
/// `round` each, so both see the same machine; the first call (which parses and caches
/// the key) is not counted.
async fn alternate_with_trivial(
    health: &mut HealthClient<Channel>,
    crypto: &mut CryptoServiceClient<Channel>,
    request: SignRequest,
    rounds: usize,
    round: Duration,
) -> Result<AlternatingRates, String> {
    let what = format!("Sign {}", request.algorithm);
    crypto
        .sign(request.clone())
        .await
        .map_err(|s| format!("{what}: {s:?}"))?;
    let (mut trivial, mut signed, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < round {
            health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map_err(|s| format!("Health/Check: {s:?}"))?;
            n += 1;
        }
        let t = f64::from(n) / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < round {
            crypto
                .sign(request.clone())
                .await
                .map_err(|s| format!("{what}: {s:?}"))?;
            n += 1;
        }
        let e = f64::from(n) / started.elapsed().as_secs_f64();
        trivial.push(t);
        signed.push(e);
        ratios.push(e / t);
    }
    Ok(AlternatingRates {
        trivial_per_s: median(&trivial),
        sign_per_s: median(&signed),
        ratio: median(&ratios),
        round_ratios: ratios,
    })
}

/// What [`alternate_with_trivial`] measured: medians over rounds.
struct AlternatingRates {
    trivial_per_s: f64,
    sign_per_s: f64,
    ratio: f64,
    round_ratios: Vec<f64>,
}

/// `calls` sequential calls cycling through the operations and cheap specs, plus
/// AdvanceDecrypt, as a workload for the memory section.
async fn many_calls(
    crypto: &mut CryptoServiceClient<Channel>,
    key_id: &str,
    calls: usize,
) -> Result<(), String> {
    let blob = crypto
        .advance_generate_data_key_pair_without_plaintext(
            AdvanceGenerateDataKeyPairWithoutPlaintextRequest {
                key_id: key_id.into(),
                key_pair_spec: "EC_P256".into(),
                key_format: "PEM".into(),
                aad: Vec::new(),
            },
        )
        .await
        .map_err(|s| format!("{s:?}"))?
        .into_inner()
        .private_key_ciphertext_blob;
    for i in 0..calls {
        let spec = if i % 2 == 0 {
            KeyPairSpec::EcP256
        } else {
            KeyPairSpec::EcP256k
        };
        if i % 5 == 4 {
            crypto
                .advance_decrypt(AdvanceDecryptRequest {
                    ciphertext_blob: blob.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|s| format!("AdvanceDecrypt: {s:?}"))?;
        } else {
            Op::ALL[i % 4]
                .call(crypto, key_id, spec)
                .await
                .map_err(|s| format!("{s:?}"))?;
        }
    }
    Ok(())
}

/// Sequential calls of `spec` after its ready pairs are used up, in rounds that
/// alternate with the raw all-cores generation rate measured in this process, so the
/// ratio compares two figures taken side by side (another program's load on a shared
/// machine hits both). Every round starts with the server's queues full.
async fn drained(
    target: &Target,
    crypto: &mut CryptoServiceClient<Channel>,
    key_id: &str,
    spec: KeyPairSpec,
    budget: Budget,
    cores: usize,
) -> Result<Drained, String> {
    const ROUNDS: u32 = 3;
    let op = Op::GenerateWithoutPlaintext;
    let depth = match &target.child {
        Some(child) => child.counters(spec).await?.capacity as usize,
        None => kmsd::keypool::PoolConfig::default().depth(spec),
    };
    let length = budget.drained(spec) / ROUNDS;
    let (mut raw_pairs, mut raw_secs) = (0usize, 0.0f64);
    let (mut calls, mut seconds) = (0usize, 0.0f64);
    let (mut hits, mut waits, mut misses) = (0, 0, 0);
    for _ in 0..ROUNDS {
        // Raw generation while the server idles with full queues.
        target.wait_full().await?;
        let (n, t) = tokio::task::spawn_blocking(move || raw::all_cores(spec, cores, length))
            .await
            .map_err(|e| e.to_string())??;
        raw_pairs += n;
        raw_secs += t.as_secs_f64();

        target.wait_full().await?;
        for _ in 0..depth {
            op.call(crypto, key_id, spec)
                .await
                .map_err(|s| format!("{s:?}"))?;
        }
        let before = match &target.child {
            Some(child) => Some(child.counters(spec).await?),
            None => None,
        };
        let started = Instant::now();
        let mut n = 0;
        while n < 2 || started.elapsed() < length {
            op.call(crypto, key_id, spec)
                .await
                .map_err(|s| format!("{} {spec}: {s:?}", op.name()))?;
            n += 1;
        }
        seconds += started.elapsed().as_secs_f64();
        calls += n;
        if let (Some(child), Some(before)) = (&target.child, before) {
            let after = child.counters(spec).await?;
            hits += after.hits - before.hits;
            // Every call takes one pair: from the queue (a hit), the next one a
            // worker finishes (a wait), or one generated for it (a miss).
            waits += (n as u64)
                .saturating_sub(after.hits - before.hits)
                .saturating_sub(after.misses - before.misses);
            misses += after.misses - before.misses;
        }
    }
    let calls_per_s = calls as f64 / seconds;
    let raw_all_cores_per_s = raw_pairs as f64 / raw_secs;
    Ok(Drained {
        spec: spec.as_str().into(),
        calls,
        seconds,
        calls_per_s,
        raw_all_cores_per_s,
        ratio: calls_per_s / raw_all_cores_per_s.max(1e-9),
        hits,
        waits,
        misses,
        generation_bound: spec.is_rsa(),
    })
}

/// `clients` connections each calling EC_P256 GenerateDataKeyPairWithoutPlaintext for
/// `length`, rejections and admitted calls timed apart. With `pace` each client calls
/// once per `pace` (an open loop: latency is the service time); without, back to back
/// (a closed loop that saturates the machine: latency is mostly queueing, clients /
/// throughput by Little's law).
///
/// With `control`, only client 0 makes the key pair call and the others call
/// Health/Check at the same pace: the same load on the transport and the CPU, with no
/// rejections. Client 0's latency there is what admitted calls are compared with.
#[allow(clippy::too_many_arguments)]
async fn under_fire(
    url: &str,
    key_id: &str,
    clients: usize,
    length: Duration,
    pace: Option<Duration>,
    control: bool,
    alone: Summary,
    server_pid: Option<u32>,
) -> Result<Throttle, String> {
    let mut channels = Vec::with_capacity(clients);
    for _ in 0..clients {
        channels.push(connect(url).await?);
    }
    let start_line = std::sync::Arc::new(tokio::sync::Barrier::new(clients));
    let cpu_before = server_pid.and_then(child::cpu_seconds);
    let tasks: Vec<_> = channels
        .into_iter()
        .enumerate()
        .map(|(i, channel)| {
            let key_id = key_id.to_owned();
            let start_line = std::sync::Arc::clone(&start_line);
            tokio::spawn(async move {
                let trivial = control && i > 0;
                let mut health = HealthClient::new(channel.clone());
                let mut client = CryptoServiceClient::new(channel);
                let (mut admitted, mut rejected, mut errors) = (Vec::new(), Vec::new(), 0usize);
                start_line.wait().await;
                let started = Instant::now();
                // Spread the paced clients' first calls over one period.
                let mut next = pace.map(|p| started + p.mul_f64(i as f64 / clients as f64));
                while started.elapsed() < length {
                    if let (Some(at), Some(p)) = (next.as_mut(), pace) {
                        tokio::time::sleep_until((*at).into()).await;
                        // Skip slots missed while a call ran long; never burst.
                        while *at <= Instant::now() {
                            *at += p;
                        }
                    }
                    let t = Instant::now();
                    if trivial {
                        if health
                            .check(HealthCheckRequest {
                                service: String::new(),
                            })
                            .await
                            .is_err()
                        {
                            errors += 1;
                        }
                        continue;
                    }
                    let result = Op::GenerateWithoutPlaintext
                        .call(&mut client, &key_id, KeyPairSpec::EcP256)
                        .await;
                    let took = t.elapsed();
                    match result {
                        Ok(()) => admitted.push(took),
                        Err(s) if s.code() == tonic::Code::ResourceExhausted => rejected.push(took),
                        Err(_) => errors += 1,
                    }
                }
                (admitted, rejected, errors, started.elapsed())
            })
        })
        .collect();
    let (mut admitted, mut rejected, mut errors, mut seconds) = (Vec::new(), Vec::new(), 0, 0.0f64);
    for task in tasks {
        let (a, r, e, took) = task.await.map_err(|e| e.to_string())?;
        admitted.extend(a);
        rejected.extend(r);
        errors += e;
        seconds = seconds.max(took.as_secs_f64());
    }
    let cpu = match (cpu_before, server_pid.and_then(child::cpu_seconds)) {
        (Some(before), Some(after)) => after - before,
        _ => 0.0,
    };
    let calls = admitted.len() + rejected.len();
    let admitted = Summary::of(&admitted);
    let rejected = Summary::of(&rejected);
    Ok(Throttle {
        clients,
        call: "EC_P256 GenerateDataKeyPairWithoutPlaintext".into(),
        pace_ms: pace.map_or(0.0, |p| p.as_secs_f64() * 1e3),
        seconds,
        rejected_per_s: rejected.n as f64 / seconds,
        admitted_per_s: admitted.n as f64 / seconds,
        admitted_slowdown: admitted.p50_ms / alone.p50_ms.max(1e-9),
        server_cpu_us_per_call: if calls > 0 && !control {
            cpu * 1e6 / calls as f64
        } else {
            0.0
        },
        control_admitted: Summary::default(),
        admitted_vs_control: 0.0,
        rejected,
        admitted,
        alone,
        errors,
    })
}

/// Prints one section measured alone (`--only-*`): its table and its verdicts.
fn print_section(lines: &str, targets: &[report::Target]) {
    print!("{lines}");
    for t in targets {
        println!(
            "[{}] {}: {:.2} (target {})",
            if t.pass { "pass" } else { "MISS" },
            t.name,
            t.measured,
            t.limit
        );
    }
}
