//! Shared harness for the end-to-end tests: a real kmsd on 127.0.0.1:0 (the bound
//! listener is handed in, so there is no port race), real tonic clients over TCP, a
//! manual clock, and temporary directories removed when the test ends.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kmsd::clock::ManualClock;
use kmsd::config::Config;
use kmsd::server::{RunningServer, StartError};
use pb::CreateKeyRequest;
use pb::crypto_service_client::CryptoServiceClient;
use pb::key_management_service_client::KeyManagementServiceClient;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic_types::StatusExt;

// The kmsd items every test module names, imported in one place: test modules use
// `crate::support::pb` and `crate::support::PoolConfig`.
pub use kmsd::keypool::PoolConfig;
pub use kmsd_api::pb;

pub mod process;
pub mod security;

/// A server under test and what it runs on.
pub struct TestServer {
    pub server: RunningServer,
    pub clock: ManualClock,
    pub channel: Channel,
    data_dir: PathBuf,
    /// The temporary directory the data lives in when the harness made it ([`start`],
    /// [`start_with`]); removed when the last owner drops it. `None` when the test
    /// holds the directory itself. Declared last, so it outlives the server.
    temp_dir: Option<TempDir>,
}

/// A stopped server's data directory and clock, to start it again on the same data.
pub struct Stopped {
    pub clock: ManualClock,
    data_dir: PathBuf,
    temp_dir: Option<TempDir>,
}

impl Stopped {
    /// The data directory the stopped server used.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Starts a server with the test config on the same data directory and clock; the
    /// new server takes over the temporary directory.
    pub async fn restart(self) -> TestServer {
        self.restart_with(|_| {}).await
    }

    /// [`Self::restart`] with the test config changed by `adjust` first.
    pub async fn restart_with(self, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = test_config(&self.data_dir);
        adjust(&mut config);
        let mut server = try_start(config, self.clock)
            .await
            .expect("server restarts");
        server.temp_dir = self.temp_dir;
        server
    }
}

impl TestServer {
    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn management(&self) -> KeyManagementServiceClient<Channel> {
        KeyManagementServiceClient::new(self.channel.clone())
    }

    pub fn crypto(&self) -> CryptoServiceClient<Channel> {
        CryptoServiceClient::new(self.channel.clone())
    }

    /// Stops the server and waits for it; the data directory lives on in [`Stopped`].
    pub async fn stop(self) -> Stopped {
        self.server.shutdown().await.expect("clean shutdown");
        Stopped {
            clock: self.clock,
            data_dir: self.data_dir,
            temp_dir: self.temp_dir,
        }
    }

    /// Waits (bounded) until the maintenance task has finished `passes` more passes.
    pub async fn wait_for_maintenance_passes(&self, passes: u64) {
        let mut rx = self.server.maintenance_passes();
        let target = rx.borrow().0 + passes;
        tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|(done, _)| *done >= target),
        )
        .await
        .expect("maintenance passes within 10 s")
        .expect("maintenance task alive");
    }
}

/// A config for tests: the pool off (tests that need it turn it on), fast maintenance.
pub fn test_config(data_dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        pool: PoolConfig::uniform(0),
        maintenance_interval: Duration::from_millis(50),
        shutdown_grace: Duration::from_secs(5),
        ..Config::default()
    }
}

/// A fresh temporary directory, removed when the returned value is dropped: hold it
/// for as long as the test's servers use it.
pub fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn start_clock() -> ManualClock {
    ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
}

/// Starts a server with `config` and `clock`.
pub async fn try_start(config: Config, clock: ManualClock) -> Result<TestServer, StartError> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let data_dir = config.data_dir.clone();
    let server = kmsd::server::start_with_clock(config, listener, Arc::new(clock.clone())).await?;
    let channel = Channel::from_shared(format!("http://{}", server.local_addr()))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    Ok(TestServer {
        server,
        clock,
        channel,
        data_dir,
        temp_dir: None,
    })
}

/// Starts a server with the test config on a fresh data dir.
pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

/// Starts a server on a fresh data dir with a config adjusted by `adjust`.
pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
    let dir = temp_dir();
    let mut config = test_config(dir.path());
    adjust(&mut config);
    let mut server = try_start(config, start_clock())
        .await
        .expect("server starts");
    server.temp_dir = Some(dir);
    server
}

/// Marks a child process started by [`in_own_process`]: the test it is to run.
const OWN_PROCESS_TEST: &str = "KMSD_E2E_OWN_PROCESS_TEST";

/// For a test that needs the process to itself (one that installs a global tracing
/// subscriber). In the ordinary run, re-runs test `name` (its path in this binary,
/// `module::test`) alone in a child process of this test binary, asserts that it ran
/// and passed there, and returns false: the caller returns at once. In that child,
/// returns true: the caller runs its body.
pub fn in_own_process(name: &str) -> bool {
    if std::env::var_os(OWN_PROCESS_TEST).is_some_and(|test| test == name) {
        return true;
    }
    let output = Command::new(std::env::current_exe().expect("the test binary"))
        .args([name, "--exact", "--test-threads=1"])
        .env(OWN_PROCESS_TEST, name)
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed;"),
        "{name} in its own process:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    false
}

/// Creates a default key and returns its ID.
pub async fn create_key(server: &TestServer) -> String {
    create_key_with(server, CreateKeyRequest::default()).await
}

pub async fn create_key_with(server: &TestServer, request: CreateKeyRequest) -> String {
    server
        .management()
        .create_key(request)
        .await
        .expect("CreateKey")
        .into_inner()
        .key_metadata
        .expect("KeyMetadata")
        .key_id
}

pub async fn describe(server: &TestServer, key_id: &str) -> pb::KeyMetadata {
    server
        .management()
        .describe_key(pb::DescribeKeyRequest {
            key_id: key_id.to_owned(),
        })
        .await
        .expect("DescribeKey")
        .into_inner()
        .key_metadata
        .expect("KeyMetadata")
}

/// The ErrorInfo reason of a status, checked to be in domain `kms` with a request ID.
pub fn reason(status: &tonic::Status) -> String {
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "kms");
    let request_id = info
        .metadata
        .get("RequestId")
        .expect("RequestId in ErrorInfo");
    assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{request_id}");
    info.reason.clone()
}

/// Asserts a call failed with `code` and public error code `error_code`.
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    error_code: &str,
) -> tonic::Status {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(&status), error_code, "{status:?}");
    status
}

/// Asserts a response's RequestId is a UUID.
pub fn assert_request_id(request_id: &str) {
    assert!(
        uuid::Uuid::parse_str(request_id).is_ok(),
        "RequestId {request_id:?}"
    );
}

pub const DAY: Duration = Duration::from_secs(86_400);

impl TestServer {
    /// The server's current (manual) time.
    pub fn clock_now(&self) -> SystemTime {
        use kmsd::clock::Clock;
        self.clock.now()
    }
}

/// Writes a root key file as an operator should: readable by its owner only (kmsd
/// refuses a root key file others may read).
pub fn write_root_key(path: &Path, key: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(key).unwrap();
}

/// The material of a key version as kmsd keeps it, unsealed with the root key next to
/// the data (the test config's): to check from outside that what kmsd signs with is
/// what it says, and that none of it reaches a log. Opens the store, so the server
/// using `data_dir` must be stopped. The AAD is the at-rest binding of
/// `docs/ciphertext.md`.
pub async fn unsealed_material(data_dir: &Path, key_id: &str, version_id: &str) -> Vec<u8> {
    use kmsd::crypto::sealer::{self, SealPurpose};
    let root = kmsd::keys::root_key::load(&data_dir.join("root.key")).expect("root key");
    let store = kmsd::store::open(&kmsd::store::StoreSettings::Embedded {
        data_dir: data_dir.to_path_buf(),
    })
    .await
    .expect("store opens");
    let version = store
        .get_version(key_id, version_id)
        .await
        .expect("read")
        .expect("the version exists");
    let aad = format!("kmsd/v1/key-material\0{key_id}\0{version_id}");
    sealer::open(
        &root,
        SealPurpose::KeyMaterialAtRest,
        &version.material.iv,
        aad.as_bytes(),
        &version.material.ciphertext,
    )
    .expect("opens under the root key")
    .to_vec()
}

/// A log written into memory by the global tracing subscriber it installs. Only a test
/// that has the process to itself may install it ([`in_own_process`]): in the shared
/// test process it would capture, and slow down, every other test.
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    /// Installs the global subscriber with `filter` (an `EnvFilter` directive), in plain
    /// text; panics if one is installed already.
    pub fn install(filter: &str) -> Self {
        let log = Self::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        log
    }

    /// Everything written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }

    /// The lines written so far that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.bytes())
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

/// Runs the real `kmsd` binary with `args` to its end (an offline subcommand, or a
/// start that must fail): whether it succeeded, its stdout and its stderr.
pub fn run_kmsd<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(args)
        .output()
        .expect("run kmsd");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
