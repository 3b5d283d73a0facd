//! Section 4g: the serving path at saturation. Many concurrent streams (`connections`
//! HTTP/2 connections × `streams` calls in flight on each, a closed loop) against
//! kmsd, and against a minimal tonic server (the floor: the same tokio runtime, the
//! same health service, no layers, nothing else) in a process of its own, in
//! alternating rounds so every figure of a round saw the same machine.
//!
//! What a call costs kmsd is reported two ways: the rate each call reaches (ratios to
//! kmsd's Health/Check of the same round, the goals), and the server's CPU time
//! per call from `/proc/PID/stat` (what the client's own cost cannot blur).
//!
//! The key pair call runs against a server whose `--keypair-concurrency` admits every
//! stream in flight: the section measures what a call costs, not the public API's rule
//! of one key pair call at a time (section 5 measures that). Any call that fails, a
//! throttled one included, stops the bench.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::child::{self, ChildServer};
use crate::report::{Target, above, median};
use crate::secrets::SECRET_LEN;
use crate::{Budget, connect};
use kmsd_api::pb::crypto_service_client::CryptoServiceClient;
use kmsd_api::pb::key_management_service_client::KeyManagementServiceClient;
use kmsd_api::pb::{
    CreateKeyRequest, DescribeKeyRequest, EncryptRequest,
    GenerateDataKeyPairWithoutPlaintextRequest, GetSecretValueRequest,
};

/// EC_P256 GenerateDataKeyPairWithoutPlaintext: at least this share of Health/Check.
pub const KEY_PAIR_RATIO_MIN: f64 = 0.6;
/// DescribeKey: at least this share of Health/Check.
pub const DESCRIBE_RATIO_MIN: f64 = 0.7;
/// Encrypt of 1 KiB: at least this share of Health/Check.
pub const ENCRYPT_RATIO_MIN: f64 = 0.7;
/// kmsd's Health/Check: at least this share of the minimal tonic server's.
pub const FLOOR_RATIO_MIN: f64 = 0.85;
/// Alternating rounds.
const ROUNDS: usize = 4;
/// The plaintext of Encrypt.
const ENCRYPT_LEN: usize = 1024;

/// The calls driven, in the order of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    /// Health/Check of the minimal tonic server.
    FloorHealth,
    /// Health/Check of kmsd.
    Health,
    DescribeKey,
    KeyPair,
    Encrypt,
    GetSecretValue,
}

impl Call {
    const ALL: [Call; 6] = [
        Call::FloorHealth,
        Call::Health,
        Call::DescribeKey,
        Call::KeyPair,
        Call::Encrypt,
        Call::GetSecretValue,
    ];

    /// The call a `--load` name asks for (`bench/profile.sh`).
    fn parse(name: &str) -> Option<Self> {
        match name {
            "health" => Some(Call::Health),
            "describe-key" => Some(Call::DescribeKey),
            "key-pair" => Some(Call::KeyPair),
            "encrypt" => Some(Call::Encrypt),
            "get-secret-value" => Some(Call::GetSecretValue),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Call::FloorHealth => "minimal tonic server: Health/Check",
            Call::Health => "kmsd: Health/Check",
            Call::DescribeKey => "DescribeKey",
            Call::KeyPair => "EC_P256 GenerateDataKeyPairWithoutPlaintext (DER)",
            Call::Encrypt => "Encrypt 1 KiB",
            Call::GetSecretValue => "GetSecretValue 1 KiB",
        }
    }
}

/// One call's figures: medians over rounds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CallRate {
    /// What was called.
    pub call: String,
    /// Successful calls per second.
    pub per_s: f64,
    /// The server's CPU time (user + system) per call, microseconds.
    pub server_cpu_us: f64,
    /// Rate over kmsd's Health/Check rate of the same round (for the floor server's
    /// Health/Check: kmsd's Health/Check over it).
    pub ratio: f64,
    /// The ratio of each round.
    pub round_ratios: Vec<f64>,
}

/// Section 4g's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Saturation {
    /// HTTP/2 connections.
    pub connections: usize,
    /// Calls in flight on each.
    pub streams: usize,
    /// Seconds per call per round.
    pub round_secs: f64,
    /// One row per call.
    pub calls: Vec<CallRate>,
}

impl Saturation {
    /// The section's lines of the table.
    pub fn lines(&self) -> String {
        let mut out = format!(
            "{} connections x {} streams, {} rounds of {:.1} s per call\n\
             {:<52} {:>9} {:>12} {:>7}  rounds\n",
            self.connections,
            self.streams,
            ROUNDS,
            self.round_secs,
            "call",
            "calls/s",
            "server us",
            "ratio",
        );
        for row in &self.calls {
            let rounds: Vec<String> = row.round_ratios.iter().map(|r| format!("{r:.2}")).collect();
            out.push_str(&format!(
                "{:<52} {:>9.0} {:>12.1} {:>7.2}  {}\n",
                row.call,
                row.per_s,
                row.server_cpu_us,
                row.ratio,
                rounds.join(" ")
            ));
        }
        out.push_str(
            "(ratio: to kmsd's Health/Check of the same round; on the floor's row, kmsd's \
             Health/Check to the floor's)\n",
        );
        out
    }

    /// The section's targets.
    pub fn targets(&self) -> Vec<Target> {
        let ratio = |call: Call| {
            self.calls
                .iter()
                .find(|row| row.call == call.name())
                .map_or(0.0, |row| row.ratio)
        };
        vec![
            above(
                "saturated: kmsd Health/Check / minimal tonic server".into(),
                ratio(Call::FloorHealth),
                FLOOR_RATIO_MIN,
            ),
            above(
                "saturated: EC_P256 key pair / Health/Check".into(),
                ratio(Call::KeyPair),
                KEY_PAIR_RATIO_MIN,
            ),
            above(
                "saturated: DescribeKey / Health/Check".into(),
                ratio(Call::DescribeKey),
                DESCRIBE_RATIO_MIN,
            ),
            above(
                "saturated: Encrypt 1 KiB / Health/Check".into(),
                ratio(Call::Encrypt),
                ENCRYPT_RATIO_MIN,
            ),
        ]
    }
}

/// What the calls need on the server: a key, a secret.
struct Fixture {
    key_id: String,
    secret_name: String,
}

/// Runs section 4g: starts a kmsd child that admits `connections × streams` key pair
/// calls at once and the minimal tonic server, then alternates the calls.
pub async fn saturation(
    budget: Budget,
    connections: usize,
    streams: usize,
) -> Result<Saturation, String> {
    let in_flight = (connections * streams).to_string();
    let kmsd = ChildServer::spawn_with(
        &child::kmsd_binary()?,
        &["--keypair-concurrency", &in_flight],
    )?;
    kmsd.wait_ms("wait-full").await?;
    let floor = FloorServer::spawn().await?;
    let measured = measure(&kmsd, &floor, budget, connections, streams).await;
    drop(floor);
    kmsd.stop();
    measured
}

async fn measure(
    kmsd: &ChildServer,
    floor: &FloorServer,
    budget: Budget,
    connections: usize,
    streams: usize,
) -> Result<Saturation, String> {
    let kmsd_url = format!("http://{}", kmsd.addr);
    let floor_url = format!("http://{}", floor.addr);
    let fixture = Arc::new(fixture(&connect(&kmsd_url).await?).await?);
    let (mut to_kmsd, mut to_floor) = (Vec::new(), Vec::new());
    for _ in 0..connections {
        to_kmsd.push(connect(&kmsd_url).await?);
        to_floor.push(connect(&floor_url).await?);
    }
    let round = budget.secs(1.0);
    // Warm every path (connections, caches, the pool's queue) before counting.
    for call in Call::ALL {
        let channels = if call == Call::FloorHealth {
            &to_floor
        } else {
            &to_kmsd
        };
        drive(channels, streams, call, &fixture, round / 4).await?;
    }
    let mut rates = vec![Vec::new(); Call::ALL.len()];
    let mut cpu = vec![Vec::new(); Call::ALL.len()];
    let mut ratios = vec![Vec::new(); Call::ALL.len()];
    for _ in 0..ROUNDS {
        let mut this_round = [0.0; Call::ALL.len()];
        for (i, call) in Call::ALL.into_iter().enumerate() {
            let (channels, pid) = if call == Call::FloorHealth {
                (&to_floor, floor.pid())
            } else {
                (&to_kmsd, kmsd.pid())
            };
            let cpu_before = child::cpu_seconds(pid);
            let (calls, seconds) = drive(channels, streams, call, &fixture, round).await?;
            let cpu_after = child::cpu_seconds(pid);
            this_round[i] = calls as f64 / seconds;
            rates[i].push(this_round[i]);
            if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
                cpu[i].push((after - before) * 1e6 / calls.max(1) as f64);
            }
        }
        let health = this_round[1];
        for (i, rate) in this_round.iter().enumerate() {
            ratios[i].push(if i == 0 { health / rate } else { rate / health });
        }
    }
    let calls = Call::ALL
        .into_iter()
        .enumerate()
        .map(|(i, call)| CallRate {
            call: call.name().into(),
            per_s: median(&rates[i]),
            server_cpu_us: median(&cpu[i]),
            ratio: median(&ratios[i]),
            round_ratios: ratios[i].clone(),
        })
        .collect();
    Ok(Saturation {
        connections,
        streams,
        round_secs: round.as_secs_f64(),
        calls,
    })
}

/// The names `--load` takes.
pub const LOAD_CALLS: &str = "health, describe-key, key-pair, encrypt, get-secret-value";

/// Drives one call at saturation against the server at `url` for `length` (what
/// `bench/profile.sh` profiles): a line with the rate reached.
pub async fn load(
    url: &str,
    call: &str,
    connections: usize,
    streams: usize,
    length: Duration,
) -> Result<String, String> {
    let call = Call::parse(call).ok_or_else(|| format!("--load takes one of {LOAD_CALLS}"))?;
    let fixture = Arc::new(fixture(&connect(url).await?).await?);
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(connect(url).await?);
    }
    let (calls, seconds) = drive(&channels, streams, call, &fixture, length).await?;
    Ok(format!(
        "{}: {:.0} calls/s ({calls} in {seconds:.1} s, {connections} connections x {streams} streams)\n",
        call.name(),
        calls as f64 / seconds
    ))
}

/// Creates the symmetric key and the secret the calls use.
async fn fixture(channel: &Channel) -> Result<Fixture, String> {
    let key_id = crate::create_key(
        channel,
        CreateKeyRequest {
            description: "kmsd-bench saturation".into(),
            ..Default::default()
        },
    )
    .await?;
    let secret_name = format!("kmsd-bench/saturation-{}", std::process::id());
    crate::secrets::create_secret(channel, &secret_name).await?;
    Ok(Fixture {
        key_id,
        secret_name,
    })
}

/// `streams` closed-loop callers on each of `channels` making `call` for `length`:
/// the successful calls and the seconds they took. Any failure stops the bench.
async fn drive(
    channels: &[Channel],
    streams: usize,
    call: Call,
    fixture: &Arc<Fixture>,
    length: Duration,
) -> Result<(u64, f64), String> {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + length;
    let mut tasks = Vec::with_capacity(channels.len() * streams);
    for channel in channels {
        for _ in 0..streams {
            let caller = Caller::new(channel.clone(), call, fixture);
            let done = Arc::clone(&done);
            tasks.push(tokio::spawn(caller.run(deadline, done)));
        }
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok((
        done.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    ))
}

/// One closed-loop caller: its clients and prepared requests.
struct Caller {
    call: Call,
    health: HealthClient<Channel>,
    crypto: CryptoServiceClient<Channel>,
    management: KeyManagementServiceClient<Channel>,
    describe: DescribeKeyRequest,
    key_pair: GenerateDataKeyPairWithoutPlaintextRequest,
    encrypt: EncryptRequest,
    secret: GetSecretValueRequest,
}

impl Caller {
    fn new(channel: Channel, call: Call, fixture: &Fixture) -> Self {
        Self {
            call,
            health: HealthClient::new(channel.clone()),
            crypto: CryptoServiceClient::new(channel.clone()),
            management: KeyManagementServiceClient::new(channel),
            describe: DescribeKeyRequest {
                key_id: fixture.key_id.clone(),
            },
            key_pair: GenerateDataKeyPairWithoutPlaintextRequest {
                key_id: fixture.key_id.clone(),
                key_pair_spec: "EC_P256".into(),
                key_format: "DER".into(),
                ..Default::default()
            },
            encrypt: EncryptRequest {
                key_id: fixture.key_id.clone(),
                plaintext: vec![0x5a; ENCRYPT_LEN],
                ..Default::default()
            },
            secret: GetSecretValueRequest {
                secret_name: fixture.secret_name.clone(),
                ..Default::default()
            },
        }
    }

    async fn run(mut self, deadline: Instant, done: Arc<AtomicU64>) -> Result<(), String> {
        while Instant::now() < deadline {
            self.once().await.map_err(|status| {
                format!(
                    "{}: {:?}: {}",
                    self.call.name(),
                    status.code(),
                    status.message()
                )
            })?;
            done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn once(&mut self) -> Result<(), tonic::Status> {
        match self.call {
            Call::FloorHealth | Call::Health => {
                self.health
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await?;
            }
            Call::DescribeKey => {
                self.management.describe_key(self.describe.clone()).await?;
            }
            Call::KeyPair => {
                let pair = self
                    .crypto
                    .generate_data_key_pair_without_plaintext(self.key_pair.clone())
                    .await?
                    .into_inner();
                if pair.public_key.is_empty() {
                    return Err(tonic::Status::internal("no public key"));
                }
            }
            Call::Encrypt => {
                self.crypto.encrypt(self.encrypt.clone()).await?;
            }
            Call::GetSecretValue => {
                let value = self
                    .crypto
                    .get_secret_value(self.secret.clone())
                    .await?
                    .into_inner();
                if value.secret_data.len() != SECRET_LEN {
                    return Err(tonic::Status::internal("another secret value"));
                }
            }
        }
        Ok(())
    }
}

// === the floor: a minimal tonic server ===

/// The argument that makes `kmsd-bench` the minimal tonic server.
pub const FLOOR_SERVER_ARG: &str = "--floor-server";

/// The minimal tonic server as a child process: this executable with
/// [`FLOOR_SERVER_ARG`].
struct FloorServer {
    child: Child,
    addr: String,
}

impl FloorServer {
    async fn spawn() -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
        let mut child = Command::new(exe)
            .arg(FLOOR_SERVER_ARG)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawning the floor server: {e}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or("the floor server has no stdout")?;
        // Blocks until the child prints its address or exits (its stdout then closes).
        let read = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
                .map(|_| line)
        })
        .await;
        match read {
            Ok(Ok(line)) if !line.trim().is_empty() => Ok(Self {
                child,
                addr: line.trim().to_owned(),
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err("the floor server did not print its address".into())
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Killed when dropped, on every path.
impl Drop for FloorServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves tonic's health service alone, SERVING, on 127.0.0.1:0 with TCP_NODELAY (as
/// kmsd), on the runtime `#[tokio::main]` builds (as kmsd's); prints the address on
/// stdout and serves until killed.
pub fn run_floor_server() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("floor server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let served: Result<(), String> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        println!("{addr}");
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
            .map_err(|e| e.to_string())
    });
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
