//! Configuration: one [`Config`], filled from flags, then `KMSD_*` environment
//! variables, then an optional TOML file (`--config`), then the defaults; the first
//! that sets a value wins.
//!
//! Each setting is declared once, as a field of `Settings` below: its doc comment is its
//! `--help` text, its `#[arg]` attribute names its flag, variable and default, and its
//! name is its TOML key (the `--pool-*` settings are keys of the `[pool]` table).
//!
//! One struct deriving both clap's parser and serde's deserializer reads more plainly
//! than a layering crate or a macro table, and keeps clap's help and serde's
//! line-and-column errors. Clap would read the process environment itself, so it parses
//! with variables and defaults stripped, and each variable, read through [`Env`] (a map
//! in tests), is handed to it as the flag it stands for.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{ArgAction, ArgMatches, Args, Command, CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;

use crate::crypto::keygen::KeyPairSpec;
use crate::keypool::PoolConfig;
use crate::keys::custody::RootKeyCustody;
use crate::keys::custody::kms::KmsTarget;
use crate::keys::custody::pkcs11_uri::Pkcs11Uri;
use crate::store::{PostgresSettings, StoreSettings};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    /// `text` or `json`, as `--log-format` takes them.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        <Self as clap::ValueEnum>::from_str(raw, false)
    }
}

// === The declaration ===

/// Every setting, declared once: the command line, the `KMSD_*` variables and the file
/// are three spellings of this struct. [`Settings::default`] holds the declared defaults.
#[derive(Clone, Debug, PartialEq, Parser, Deserialize)]
#[command(
    name = "kmsd",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("KMSD_GIT_COMMIT"), ")"),
    about = "kmsd: a self-hosted Key Management Service over gRPC",
    long_about = "kmsd: a self-hosted Key Management Service over gRPC.\n\n\
        Every setting is a flag, a KMSD_* environment variable, or a key of the TOML file \
        named by --config (the flag's name with underscores; --pool-* in the [pool] table). \
        A flag beats its variable, which beats the file, which beats the default.\n\n\
        With the server stopped, `kmsd rotate-root-key` reseals all key material under a \
        new root key (see `kmsd rotate-root-key --help`); `kmsd root-key init-pkcs11` \
        and `kmsd root-key init-kms` make a root key wrapped by an HSM key or by another \
        KMS's key (docs/root-key.md). `kmsd audit verify \
        FILE…` checks the hash chain of audit log files, offline."
)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// TOML file of settings; flags and variables beat it.
    #[arg(long, env = "KMSD_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    config: Option<PathBuf>,

    /// Address to serve gRPC on.
    #[arg(
        long,
        env = "KMSD_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:50051"
    )]
    listen: SocketAddr,

    /// Directory of the embedded key store.
    #[arg(
        long,
        env = "KMSD_DATA_DIR",
        value_name = "DIR",
        default_value = "./kmsd-data"
    )]
    data_dir: PathBuf,

    /// File holding the 32-byte root key (raw, hex or base64). Without it the server uses
    /// <data-dir>/root.key, created on first start: for development only.
    #[arg(long, env = "KMSD_ROOT_KEY_FILE", value_name = "FILE")]
    root_key_file: Option<PathBuf>,

    // The `--root-key-*` custodies: the `[root_key]` table of the file.
    #[command(flatten)]
    root_key: RootKeySection,

    /// Log line format (logs go to stderr).
    #[arg(
        long,
        env = "KMSD_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(long, env = "KMSD_LOG", value_name = "FILTER", default_value = "info")]
    log: String,

    // The `--pool-*` flags: the `[pool]` table of the file.
    #[command(flatten)]
    pool: PoolSettings,

    // `--store` and the `--store-*` flags: the `[store]` table of the file.
    #[command(flatten)]
    store: StoreSection,

    /// Data key pair calls served at once; more are rejected with Rejected.Throttling.
    #[arg(
        long,
        env = "KMSD_KEYPAIR_CONCURRENCY",
        value_name = "N",
        default_value = "1"
    )]
    keypair_concurrency: usize,

    /// Seconds between passes of automatic rotation and key destruction.
    #[arg(
        long,
        env = "KMSD_MAINTENANCE_INTERVAL_SECS",
        value_name = "SECONDS",
        default_value = "60"
    )]
    maintenance_interval_secs: u64,

    /// Seconds in-flight calls get to finish after SIGTERM.
    #[arg(
        long,
        env = "KMSD_SHUTDOWN_GRACE_SECS",
        value_name = "SECONDS",
        default_value = "30"
    )]
    shutdown_grace_secs: u64,

    /// Address to serve Prometheus metrics on, at /metrics; without it metrics are off.
    #[arg(long, env = "KMSD_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,

    /// Address to serve the official SDKs' HTTPS protocol on (POST / with
    /// x-kms-apiname); without it the gateway is off. Uses --https-tls-cert/-key, else
    /// --tls-cert/--tls-key; on a loopback address without them, a development
    /// certificate in the data directory.
    #[arg(long, env = "KMSD_HTTPS_LISTEN", value_name = "ADDR")]
    https_listen: Option<SocketAddr>,

    /// HTTPS gateway connections open at once, at most; a connection over it is closed
    /// at once and counted (kmsd_https_connections_refused_total).
    #[arg(
        long,
        env = "KMSD_HTTPS_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = Config::DEFAULT_HTTPS_MAX_CONNECTIONS
    )]
    https_max_connections: usize,

    /// PEM certificate chain to serve TLS with (needs --tls-key).
    #[arg(long, env = "KMSD_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "KMSD_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// PEM certificate chain of the HTTPS gateway alone (needs --https-tls-key), so
    /// gRPC can stay plaintext behind a mesh sidecar while the gateway serves its own
    /// certificate. Without it the gateway serves --tls-cert.
    #[arg(long, env = "KMSD_HTTPS_TLS_CERT", value_name = "FILE")]
    https_tls_cert: Option<PathBuf>,

    /// PEM private key of --https-tls-cert.
    #[arg(long, env = "KMSD_HTTPS_TLS_KEY", value_name = "FILE")]
    https_tls_key: Option<PathBuf>,

    /// PEM CA certificate(s): require and verify client certificates against them (mTLS).
    /// Needs --tls-cert.
    #[arg(long, env = "KMSD_TLS_CLIENT_CA", value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,

    /// Serve plaintext on a non-loopback address (e.g. behind a mesh sidecar that
    /// terminates mTLS). Without it such a start is refused.
    // A value is optional so that the variable (and a later flag) can say false.
    #[arg(
        long,
        env = "KMSD_ALLOW_PLAINTEXT",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false"
    )]
    allow_plaintext: bool,

    /// DANGEROUS: serve gRPC or the gateway on a non-loopback address without
    /// --auth-config, open to everyone who can reach it (Decrypt, Backup, client keys).
    /// Without it such a start is refused.
    #[arg(
        long,
        env = "KMSD_ALLOW_UNAUTHENTICATED_NETWORK",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false"
    )]
    allow_unauthenticated_network: bool,

    /// TOML file of principals and their grants; turns access control on. Without it the
    /// server is open to anyone who can connect.
    #[arg(long, env = "KMSD_AUTH_CONFIG", value_name = "FILE")]
    auth_config: Option<PathBuf>,

    /// Days a client key may be valid at most (CreateClientKey's NotAfter, counted from
    /// its NotBefore and from now); a longer validity is refused with InvalidParameter.
    #[arg(
        long,
        env = "KMSD_CLIENT_KEY_MAX_VALIDITY_DAYS",
        value_name = "DAYS",
        default_value = "365"
    )]
    client_key_max_validity_days: u64,

    /// Write one JSON line per RPC, hash-chained: to this file (reopened on SIGHUP),
    /// to stdout (`-` or `stdout`), or to syslog (`syslog:///dev/log`, a local unix
    /// socket; `syslog://HOST:PORT`, UDP).
    #[arg(long, env = "KMSD_AUDIT_LOG", value_name = "FILE")]
    audit_log: Option<PathBuf>,

    /// Refuse a call whose audit records cannot be written: a request record is
    /// written (fsync'd, for a file) before the call takes effect, its outcome before
    /// the response is sent. Needs --audit-log, and not syslog over UDP.
    #[arg(
        long,
        env = "KMSD_AUDIT_REQUIRED",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false"
    )]
    audit_required: bool,

    /// This server's name in audit records and their syslog header (e.g. the pod
    /// name); printable ASCII without spaces. Without it, the host name.
    #[arg(long, env = "KMSD_REPLICA_ID", value_name = "NAME")]
    replica_id: Option<String>,

    /// TOML file of keys to create at start: fixed IDs, descriptions, aliases, specs and
    /// rotation policies (README: Seeding). Applying it again changes nothing; a key
    /// that conflicts with the store stops the start.
    #[arg(long, env = "KMSD_SEED_FILE", value_name = "FILE")]
    seed_file: Option<PathBuf>,

    /// DEVELOPMENT ONLY: accept fixed key material in --seed-file, so ciphertexts made
    /// in one test run open in the next. Anyone with the file can decrypt.
    #[arg(
        long,
        env = "KMSD_DEV_FIXED_SEED_MATERIAL",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false"
    )]
    dev_fixed_seed_material: bool,
}

/// The key pair pool's settings: the `--pool-*` flags and the file's `[pool]` table.
#[derive(Clone, Debug, PartialEq, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PoolSettings {
    /// Ready key pairs kept per spec; 0 turns the pool off. Without it each spec has its
    /// own depth (docs/pool.md); the file's [pool.depths] table sets them one by one.
    #[arg(long = "pool-depth", env = "KMSD_POOL_DEPTH", value_name = "N")]
    depth: Option<usize>,

    /// Key generation threads; the default is the number of cores.
    #[arg(
        long = "pool-workers",
        env = "KMSD_POOL_WORKERS",
        value_name = "N",
        default_value_t = PoolConfig::default().workers
    )]
    workers: usize,

    /// Per-spec depths, file only: `depths = { RSA_4096 = 2 }`.
    #[arg(skip)]
    depths: BTreeMap<String, usize>,
}

/// Where the root key is kept, other than a plain file: the `--root-key-*` custody
/// flags, the file's `[root_key]` table (docs/root-key.md).
#[derive(Clone, Debug, Default, PartialEq, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RootKeySection {
    /// PKCS#11 URI (RFC 7512) of an AES-256 key in an HSM that wraps the root key:
    /// --root-key-file then holds the wrapped key (`kmsd root-key init-pkcs11`), e.g.
    /// pkcs11:token=kmsd;object=kmsd-root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/hsm-pin
    #[arg(
        long = "root-key-pkcs11",
        env = "KMSD_ROOT_KEY_PKCS11",
        value_name = "URI"
    )]
    pkcs11: Option<String>,

    /// Another KMS instance whose key wraps the root key (the SDKs' HTTPS protocol:
    /// another kmsd's --https-listen, or the cloud's KMS instance): --root-key-file
    /// then holds the wrapped key (`kmsd root-key init-kms`), e.g.
    /// https://kms.example:8443?key-id=alias/kmsd-root&client-key-file=/run/secrets/kms/client-key.json&password-file=/run/secrets/kms/password&ca-file=/run/secrets/kms/ca.pem
    #[arg(
        long = "root-key-kms",
        env = "KMSD_ROOT_KEY_KMS",
        value_name = "ENDPOINT"
    )]
    kms: Option<String>,
}

/// The key store's settings: `--store` and the `--store-*` flags, the file's `[store]`
/// table.
#[derive(Clone, Debug, PartialEq, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct StoreSection {
    /// PostgreSQL key store shared by many replicas: postgres://user@host:port/db
    /// (sslmode=verify-full&sslrootcert=FILE for verified TLS). Without it keys live in
    /// the embedded store under --data-dir.
    #[arg(long = "store", env = "KMSD_STORE", value_name = "URL")]
    url: Option<String>,

    /// Connections to the PostgreSQL store this replica opens at most.
    #[arg(
        long = "store-max-connections",
        env = "KMSD_STORE_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = PostgresSettings::DEFAULT_MAX_CONNECTIONS
    )]
    max_connections: u32,

    /// Milliseconds a call waits for a PostgreSQL connection, and a statement may run,
    /// before the call fails with UNAVAILABLE.
    #[arg(
        long = "store-timeout-ms",
        env = "KMSD_STORE_TIMEOUT_MS",
        value_name = "MILLISECONDS",
        default_value_t = PostgresSettings::DEFAULT_TIMEOUT.as_millis() as u64
    )]
    timeout_ms: u64,

    /// Reach a PostgreSQL store on another host without sslmode verify-full or
    /// verify-ca (the network path is protected otherwise: a private link, a sidecar).
    #[arg(
        long = "store-allow-insecure-transport",
        env = "KMSD_STORE_ALLOW_INSECURE_TRANSPORT",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false"
    )]
    allow_insecure_transport: bool,
}

impl Default for StoreSection {
    fn default() -> Self {
        Settings::default().store
    }
}

impl StoreSection {
    /// The PostgreSQL settings, if `--store` names a database.
    fn into_postgres(self) -> Result<Option<PostgresSettings>, ConfigError> {
        let Some(url) = self.url else {
            return Ok(None);
        };
        let mut settings = PostgresSettings::new(&url)
            .map_err(|err| ConfigError::Invalid(format!("--store: {err}")))?;
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "--store-max-connections must be at least 1".into(),
            ));
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "--store-timeout-ms must be at least 1".into(),
            ));
        }
        settings.max_connections = self.max_connections;
        settings.timeout = Duration::from_millis(self.timeout_ms);
        settings.allow_insecure_transport = self.allow_insecure_transport;
        Ok(Some(settings))
    }
}

impl Default for Settings {
    /// The defaults declared in the `#[arg]` attributes.
    fn default() -> Self {
        // Without the environment: only the declared values.
        let matches = command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(["kmsd"])
            .expect("the declared defaults parse");
        Settings::from_arg_matches(&matches).expect("the declared defaults parse")
    }
}

impl Default for PoolSettings {
    fn default() -> Self {
        Settings::default().pool
    }
}

/// The command line `--help` describes: each flag with its variable and default.
fn command() -> Command {
    // The variables' current values stay out of the help, so it reads the same anywhere.
    Settings::command().mut_args(|arg| arg.hide_env_values(true))
}

/// [`command`] without variables and defaults: its matches hold only what the arguments
/// say, and a flag given twice keeps its last value.
fn bare_command() -> Command {
    command()
        .args_override_self(true)
        .mut_args(|arg| arg.env(None).default_value(None))
}

// === impl Env ===

/// Read access to environment variables.
pub trait Env {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The command line is wrong, or asks for `--help` or `--version`: the error's
    /// `exit` prints the message or the help and exits with the right status.
    #[error("{0}")]
    Args(clap::Error),
    /// An environment variable holds a value of the wrong shape.
    #[error("environment variable {name}: {message}")]
    Env {
        /// The variable.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The config file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    FileRead {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The config file is not valid TOML of the expected shape.
    #[error("invalid config file {path}: {message}")]
    FileParse {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

// === impl Config ===

/// Every setting of the server, resolved.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to serve gRPC.
    pub listen: SocketAddr,
    /// The embedded store's directory.
    pub data_dir: PathBuf,
    /// The PostgreSQL store (`--store`); `None` keeps the keys in the embedded store.
    pub postgres: Option<PostgresSettings>,
    /// The root key file; `None` means `<data_dir>/root.key`, created if missing.
    pub root_key_file: Option<PathBuf>,
    /// The HSM key that wraps the root key in `root_key_file` (`--root-key-pkcs11`);
    /// `None`: the file holds the key itself.
    pub root_key_pkcs11: Option<Pkcs11Uri>,
    /// The other KMS's key that wraps the root key in `root_key_file`
    /// (`--root-key-kms`); `None`: no KMS custody.
    pub root_key_kms: Option<KmsTarget>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log: String,
    /// The key pair pool.
    pub pool: PoolConfig,
    /// Data key pair calls served at once.
    pub keypair_concurrency: usize,
    /// Time between maintenance passes.
    pub maintenance_interval: Duration,
    /// Time in-flight calls get after SIGTERM.
    pub shutdown_grace: Duration,
    /// Where to serve `/metrics`; `None` turns metrics serving off.
    pub metrics_listen: Option<SocketAddr>,
    /// Where to serve the official SDKs' HTTPS protocol; `None` turns the gateway off.
    pub https_listen: Option<SocketAddr>,
    /// Gateway connections open at once, at most (`--https-max-connections`).
    pub https_max_connections: usize,
    /// TLS (and mTLS) settings; `None` serves plaintext.
    pub tls: Option<TlsFiles>,
    /// The HTTPS gateway's own certificate and key (`--https-tls-cert`); `None`
    /// serves `tls`'s.
    pub https_tls: Option<CertFiles>,
    /// Whether plaintext may be served on a non-loopback address.
    pub allow_plaintext: bool,
    /// Whether a server without access control may listen on a non-loopback address.
    pub allow_unauthenticated_network: bool,
    /// The principals file; `None` runs without access control.
    pub auth_config: Option<PathBuf>,
    /// The longest validity of a client key.
    pub client_key_max_validity: Duration,
    /// The audit log file; `None` writes no audit log.
    pub audit_log: Option<PathBuf>,
    /// Whether a call fails, with no effect, when its audit records cannot be written.
    pub audit_required: bool,
    /// This server's name in audit records (`--replica-id`, else the host name).
    pub replica: String,
    /// Keys to create at start; `None` seeds nothing.
    pub seed_file: Option<PathBuf>,
    /// Whether the seed file may fix key material (development only).
    pub dev_fixed_seed_material: bool,
}

/// The PEM files TLS is served with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    /// CA certificates client certificates must chain to; `Some` requires them (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// A certificate chain and its private key, PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl Default for Config {
    /// The declared defaults (see `kmsd --help`).
    fn default() -> Self {
        Settings::default()
            .into_config()
            .expect("the declared defaults are valid")
    }
}

impl Config {
    /// Gateway connections open at once unless configured: far above what a fleet of
    /// SDK clients with keep-alive needs, far below a file-descriptor limit.
    pub const DEFAULT_HTTPS_MAX_CONNECTIONS: usize = 1024;

    /// Resolves the configuration from command-line arguments (the program name first,
    /// as [`std::env::args_os`] gives them) and an environment, reading the file that
    /// `--config` or `KMSD_CONFIG` names.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Args`] for a bad flag and for `--help` and `--version` (its `exit`
    /// prints them); the other variants name the variable, file or setting at fault.
    pub fn from_args<I, T>(args: I, env: &dyn Env) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        Settings::resolve(args, env)?.into_config()
    }

    /// The ranges of single settings the parsers cannot express, then
    /// [`check_combinations`](Self::check_combinations).
    fn validate(&self) -> Result<(), ConfigError> {
        if self.keypair_concurrency == 0 {
            return Err(ConfigError::Invalid(
                "--keypair-concurrency must be at least 1".into(),
            ));
        }
        if self.maintenance_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "--maintenance-interval-secs must be at least 1".into(),
            ));
        }
        if self.client_key_max_validity.is_zero() {
            return Err(ConfigError::Invalid(
                "--client-key-max-validity-days must be at least 1".into(),
            ));
        }
        if self.pool.workers == 0 {
            return Err(ConfigError::Invalid(
                "--pool-workers must be at least 1".into(),
            ));
        }
        if self.https_max_connections == 0 {
            return Err(ConfigError::Invalid(
                "--https-max-connections must be at least 1".into(),
            ));
        }
        self.check_combinations()
    }

    /// The rules that combine settings: each setting is valid alone, the combination is
    /// not. Resolving a config checks them; so does [`crate::kms::Kms::open`], since a
    /// `Config` built in code (tests, the benchmark) never went through resolution.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the settings and what to add.
    pub fn check_combinations(&self) -> Result<(), ConfigError> {
        if self.audit_required && self.audit_log.is_none() {
            return Err(ConfigError::Invalid(
                "--audit-required needs --audit-log (the file the records must reach)".into(),
            ));
        }
        if self.root_key_pkcs11.is_some() && self.root_key_file.is_none() {
            return Err(ConfigError::Invalid(
                "--root-key-pkcs11 needs --root-key-file: the file holding the root key \
                 wrapped by the HSM key (written by `kmsd root-key init-pkcs11`)"
                    .into(),
            ));
        }
        if self.root_key_kms.is_some() && self.root_key_file.is_none() {
            return Err(ConfigError::Invalid(
                "--root-key-kms needs --root-key-file: the file holding the root key \
                 wrapped by the other KMS's key (written by `kmsd root-key init-kms`)"
                    .into(),
            ));
        }
        if self.root_key_kms.is_some() && self.root_key_pkcs11.is_some() {
            return Err(ConfigError::Invalid(
                "--root-key-kms and --root-key-pkcs11 both name a custody for the root key: \
                 pass the one --root-key-file was wrapped by"
                    .into(),
            ));
        }
        if self.postgres.is_some() && self.root_key_file.is_none() {
            // A root key created beside one replica's data would differ on the next.
            return Err(ConfigError::Invalid(
                "--store needs --root-key-file: every replica must load the same root key, \
                 kept outside the database (a Secret, a mounted file)"
                    .into(),
            ));
        }
        if let Some(postgres) = &self.postgres
            && !postgres.allow_insecure_transport
            && let Some(what) = postgres.unverified_transport()
        {
            return Err(ConfigError::Invalid(format!(
                "refusing to reach the PostgreSQL store at {what} over a connection that \
                 does not verify the server: whoever is on the network path could read and \
                 rewrite the key store. Use sslmode=verify-full (with sslrootcert=FILE for a \
                 private CA) or verify-ca in --store, or pass \
                 --store-allow-insecure-transport if the path is protected otherwise"
            )));
        }
        self.check_audit_target()?;
        if self.https_tls.is_some() && self.https_listen.is_none() {
            return Err(ConfigError::Invalid(
                "--https-tls-cert is the HTTPS gateway's certificate: it needs --https-listen"
                    .into(),
            ));
        }
        if let Some(addr) = self.https_listen
            && self.gateway_tls().is_none()
            && !addr.ip().is_loopback()
        {
            return Err(ConfigError::Invalid(format!(
                "refusing to serve the HTTPS gateway on {addr}, which is not a loopback address, \
                 without a certificate: pass --https-tls-cert and --https-tls-key (or \
                 --tls-cert and --tls-key, shared with gRPC; a development certificate is \
                 made only for 127.0.0.1 or ::1)"
            )));
        }
        for (addr, what) in [
            (Some(self.listen), "gRPC"),
            (self.https_listen, "the HTTPS gateway"),
        ] {
            if let Some(addr) = addr {
                self.check_open_on_network(addr, what)?;
                self.check_dev_seed_on_network(addr, what)?;
            }
        }
        Ok(())
    }

    /// The HTTPS gateway's certificate and key: `--https-tls-cert`/`--https-tls-key`,
    /// else gRPC's `--tls-cert`/`--tls-key`; `None` for neither.
    pub fn gateway_tls(&self) -> Option<CertFiles> {
        self.https_tls.clone().or_else(|| {
            self.tls.as_ref().map(|files| CertFiles {
                cert: files.cert.clone(),
                key: files.key.clone(),
            })
        })
    }

    /// `--audit-log` names a target kmsd can write ([`crate::audit::output::Target`]),
    /// and `--audit-required` one that confirms each write (not syslog over UDP).
    fn check_audit_target(&self) -> Result<(), ConfigError> {
        let Some(value) = &self.audit_log else {
            return Ok(());
        };
        let target = crate::audit::output::Target::parse(value).map_err(ConfigError::Invalid)?;
        if self.audit_required && !target.confirms_writes() {
            return Err(ConfigError::Invalid(format!(
                "--audit-required cannot be kept with --audit-log {target}: UDP does not say \
                 whether a record arrived. Use syslog:///dev/log (the local daemon's socket), \
                 a file or stdout"
            )));
        }
        Ok(())
    }

    /// Refuses `--dev-fixed-seed-material` (key material anyone with the seed file
    /// knows) when `what` is served on `addr`, not a loopback address: a development
    /// setup only. Also checked by the server for a listener handed in.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the flag.
    pub fn check_dev_seed_on_network(
        &self,
        addr: SocketAddr,
        what: &str,
    ) -> Result<(), ConfigError> {
        if !self.dev_fixed_seed_material || addr.ip().is_loopback() {
            return Ok(());
        }
        Err(ConfigError::Invalid(format!(
            "refusing to serve {what} on {addr}, which is not a loopback address, with \
             --dev-fixed-seed-material: fixed key material is for development on 127.0.0.1 \
             only (anyone with the seed file can decrypt)"
        )))
    }

    /// Refuses to serve `what` on `addr`, not a loopback address, without access
    /// control, unless `--allow-unauthenticated-network` says so. Also checked by the
    /// server for a listener handed in (whose address need not be `--listen`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `--auth-config` and the opt-out flag.
    pub fn check_open_on_network(&self, addr: SocketAddr, what: &str) -> Result<(), ConfigError> {
        if self.auth_config.is_some() || addr.ip().is_loopback() {
            return Ok(());
        }
        if self.allow_unauthenticated_network {
            tracing::warn!(
                %addr,
                "serving {what} WITHOUT ACCESS CONTROL on a non-loopback address \
                 (--allow-unauthenticated-network): anyone who can reach it may use and \
                 manage every key"
            );
            return Ok(());
        }
        Err(ConfigError::Invalid(format!(
            "refusing to serve {what} on {addr}, which is not a loopback address, without \
             access control: anyone on the network could decrypt, back up the store and mint \
             client keys. Pass --auth-config FILE, listen on 127.0.0.1, or pass \
             --allow-unauthenticated-network if this network is yours alone"
        )))
    }

    /// Where the keys live: PostgreSQL if `--store` names it, else the embedded store
    /// in the data directory.
    pub fn store_settings(&self) -> StoreSettings {
        match &self.postgres {
            Some(postgres) => StoreSettings::Postgres(postgres.clone()),
            None => StoreSettings::Embedded {
                data_dir: self.data_dir.clone(),
            },
        }
    }

    /// The root key file to use: the configured one or `<data_dir>/root.key`.
    pub fn root_key_path(&self) -> PathBuf {
        self.root_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("root.key"))
    }

    /// Where the configured root key is kept, if `--root-key-file` names it; `None`
    /// for the development key beside the data.
    pub fn root_key_custody(&self) -> Option<RootKeyCustody> {
        let file = self.root_key_file.clone()?;
        Some(RootKeyCustody::new(
            file,
            self.root_key_pkcs11.clone(),
            self.root_key_kms.clone(),
        ))
    }
}

// === impl Settings ===

impl Settings {
    /// Layers the sources: the defaults, the file over them, then the variables and the
    /// flags, parsed together with each variable written as its flag before the real
    /// flags, so that a flag given both ways keeps the command line's value.
    fn resolve<I, T>(args: I, env: &dyn Env) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let mut args = args.into_iter().map(Into::into);
        let program = args.next().unwrap_or_else(|| "kmsd".into());
        let all: Vec<OsString> = std::iter::once(program)
            .chain(env_as_flags(env)?)
            .chain(args)
            .collect();
        let matches = parse(&all)?;
        let mut settings = match matches.get_one::<PathBuf>("config") {
            Some(path) => load_file(path)?,
            None => Settings::default(),
        };
        settings
            .update_from_arg_matches(&matches)
            .map_err(ConfigError::Args)?;
        Ok(settings)
    }

    /// The typed [`Config`], with the checks no single setting can make alone.
    fn into_config(self) -> Result<Config, ConfigError> {
        let config = Config {
            listen: self.listen,
            data_dir: self.data_dir,
            postgres: self.store.into_postgres()?,
            root_key_file: self.root_key_file,
            root_key_pkcs11: self
                .root_key
                .pkcs11
                .map(|uri| {
                    uri.parse::<Pkcs11Uri>()
                        .map_err(|err| ConfigError::Invalid(format!("--root-key-pkcs11: {err}")))
                })
                .transpose()?,
            root_key_kms: self
                .root_key
                .kms
                .map(|target| {
                    target
                        .parse::<KmsTarget>()
                        .map_err(|err| ConfigError::Invalid(format!("--root-key-kms: {err}")))
                })
                .transpose()?,
            log_format: self.log_format,
            log: self.log,
            pool: self.pool.into_pool_config()?,
            keypair_concurrency: self.keypair_concurrency,
            maintenance_interval: Duration::from_secs(self.maintenance_interval_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            metrics_listen: self.metrics_listen,
            https_listen: self.https_listen,
            https_max_connections: self.https_max_connections,
            tls: tls_files(self.tls_cert, self.tls_key, self.tls_client_ca)?,
            https_tls: https_tls_files(self.https_tls_cert, self.https_tls_key)?,
            allow_plaintext: self.allow_plaintext,
            allow_unauthenticated_network: self.allow_unauthenticated_network,
            auth_config: self.auth_config,
            client_key_max_validity: Duration::from_secs(
                self.client_key_max_validity_days.saturating_mul(24 * 3600),
            ),
            audit_log: self.audit_log,
            audit_required: self.audit_required,
            replica: replica(self.replica_id)?,
            seed_file: self.seed_file,
            dev_fixed_seed_material: self.dev_fixed_seed_material,
        };
        config.validate()?;
        Ok(config)
    }
}

impl PoolSettings {
    fn into_pool_config(self) -> Result<PoolConfig, ConfigError> {
        let mut pool = match self.depth {
            Some(depth) => PoolConfig::uniform(depth),
            None => PoolConfig::default_for_workers(self.workers),
        };
        pool.workers = self.workers;
        for (name, depth) in &self.depths {
            let spec: KeyPairSpec = name.parse().map_err(|_| {
                let valid: Vec<&str> = KeyPairSpec::ALL.iter().map(|s| s.as_str()).collect();
                ConfigError::Invalid(format!(
                    "[pool.depths]: unknown key pair spec {name:?}; valid: {}",
                    valid.join(", ")
                ))
            })?;
            pool.depths.insert(spec, *depth);
        }
        Ok(pool)
    }
}

/// The TLS files, or which one of them is missing.
fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key, client_ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), client_ca) => Ok(Some(TlsFiles {
            cert,
            key,
            client_ca,
        })),
        (Some(_), None, _) => Err(ConfigError::Invalid(
            "--tls-cert needs --tls-key (the certificate's private key)".into(),
        )),
        (None, Some(_), _) => Err(ConfigError::Invalid(
            "--tls-key needs --tls-cert (the certificate chain)".into(),
        )),
        (None, None, Some(_)) => Err(ConfigError::Invalid(
            "--tls-client-ca (mTLS) needs --tls-cert and --tls-key".into(),
        )),
    }
}

/// The gateway's own certificate and key, or which one of them is missing.
fn https_tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<CertFiles>, ConfigError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(CertFiles { cert, key })),
        (Some(_), None) => Err(ConfigError::Invalid(
            "--https-tls-cert needs --https-tls-key (the certificate's private key)".into(),
        )),
        (None, Some(_)) => Err(ConfigError::Invalid(
            "--https-tls-key needs --https-tls-cert (the certificate chain)".into(),
        )),
    }
}

/// The replica's name: `--replica-id`, else the host name; as RFC 5424's HOSTNAME
/// allows (1 to 255 printable ASCII characters, no space), since syslog carries it.
fn replica(replica_id: Option<String>) -> Result<String, ConfigError> {
    let valid =
        |name: &str| (1..=255).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic());
    match replica_id {
        Some(name) if valid(&name) => Ok(name),
        Some(name) => Err(ConfigError::Invalid(format!(
            "--replica-id {name:?}: 1 to 255 printable ASCII characters, no spaces"
        ))),
        None => Ok(Some(host_name())
            .filter(|name| valid(name))
            .unwrap_or_else(|| "localhost".into())),
    }
}

/// The host name (`uname`'s nodename).
fn host_name() -> String {
    #[cfg(target_os = "linux")]
    {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    }
    #[cfg(not(target_os = "linux"))]
    {
        String::new()
    }
}

/// The set `KMSD_*` variables as the flags they stand for: `KMSD_LISTEN=a` is
/// `--listen=a`. An empty variable counts as unset.
fn env_as_flags(env: &dyn Env) -> Result<Vec<OsString>, ConfigError> {
    let mut bare = bare_command();
    let mut flags = Vec::new();
    for arg in command().get_arguments() {
        let (Some(name), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let name = name.to_string_lossy();
        let Some(value) = env.var(&name).filter(|value| !value.is_empty()) else {
            continue;
        };
        let flag = OsString::from(format!("--{long}={value}"));
        // Parsed alone first, so that a bad value is reported with its variable's name.
        bare.try_get_matches_from_mut([OsString::from("kmsd"), flag.clone()])
            .map_err(|err| ConfigError::Env {
                name: name.into_owned(),
                message: clap_message(&err),
            })?;
        flags.push(flag);
    }
    Ok(flags)
}

/// Parses the arguments with [`bare_command`]; `--help` and `--version` are answered by
/// the full [`command`], whose help shows each flag's variable and default.
fn parse(args: &[OsString]) -> Result<ArgMatches, ConfigError> {
    bare_command()
        .try_get_matches_from(args)
        .map_err(|err| match err.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                command().try_get_matches_from(args).err().unwrap_or(err)
            }
            _ => err,
        })
        .map_err(ConfigError::Args)
}

/// A clap error's message on one line, without its `error: ` prefix and its hints.
fn clap_message(err: &clap::Error) -> String {
    let text = err.to_string();
    let message = text.split("\n\n").next().unwrap_or_default();
    let message = message.strip_prefix("error: ").unwrap_or(message);
    message
        .split('\n')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The file's settings over the defaults.
fn load_file(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::FileRead {
        path: path.display().to_string(),
        source,
    })?;
    toml::from_str(&text).map_err(|err| ConfigError::FileParse {
        path: path.display().to_string(),
        message: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The command line `kmsd ARGS...`.
    fn args<'a>(args: &[&'a str]) -> Vec<&'a str> {
        std::iter::once("kmsd")
            .chain(args.iter().copied())
            .collect()
    }

    /// A TOML file holding `text`, and the directory that keeps it alive.
    fn toml_file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kmsd.toml");
        std::fs::write(&file, text).unwrap();
        (dir, file.to_str().unwrap().to_owned())
    }

    /// The declared settings: every argument of the command but `--help` and `--version`.
    fn declared() -> Vec<clap::Arg> {
        let mut command = command();
        command.build();
        command
            .get_arguments()
            .filter(|arg| !matches!(arg.get_id().as_str(), "help" | "version"))
            .cloned()
            .collect()
    }

    /// The file key of a flag's setting: the flag with underscores, or `table.field` for a
    /// setting of a table (a flattened struct, whose field name is the argument's ID):
    /// `--listen` is `listen`, `--pool-depth` is `pool.depth`. A table's own flag is
    /// the table's name: `--store` is `store.url`.
    fn toml_key(arg: &clap::Arg) -> String {
        let field = arg.get_id().as_str();
        let long = arg.get_long().unwrap().replace('-', "_");
        match long.strip_suffix(field) {
            Some("") => field.to_owned(),
            Some(table) => format!("{}.{field}", table.trim_end_matches('_')),
            None if long == "store" => format!("{long}.{field}"),
            None => panic!("--{long}: the flag does not end with its field name {field}"),
        }
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = Config::from_args(args(&[]), &env(&[])).unwrap();
        assert_eq!(config.listen, "127.0.0.1:50051".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("./kmsd-data"));
        assert_eq!(
            config.root_key_path(),
            PathBuf::from("./kmsd-data/root.key")
        );
        assert_eq!(config.keypair_concurrency, 1);
        assert_eq!(config.log_format, LogFormat::Text);
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kmsd.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:7000\"\ndata_dir = \"/from/file\"\nlog_format = \"json\"\n\
             keypair_concurrency = 3\n[pool]\ndepth = 5\n[pool.depths]\nRSA_4096 = 1\n",
        )
        .unwrap();
        let file_arg = file.to_str().unwrap();
        let env = env(&[
            ("KMSD_DATA_DIR", "/from/env"),
            ("KMSD_KEYPAIR_CONCURRENCY", "2"),
        ]);
        let config = Config::from_args(
            args(&["--config", file_arg, "--keypair-concurrency", "4"]),
            &env,
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("/from/env"));
        assert_eq!(config.keypair_concurrency, 4);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.pool.depth(KeyPairSpec::Rsa4096), 1);
        assert_eq!(config.pool.depth(KeyPairSpec::EcP256), 5);
    }

    #[test]
    fn bad_values_are_reported_with_their_source() {
        let err = Config::from_args(args(&[]), &env(&[("KMSD_LISTEN", "nowhere")])).unwrap_err();
        assert!(err.to_string().contains("KMSD_LISTEN"), "{err}");
        let err = Config::from_args(args(&["--keypair-concurrency", "0"]), &env(&[])).unwrap_err();
        assert!(err.to_string().contains("keypair-concurrency"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:1\"\nlisten_typo = 3\n").unwrap();
        let err =
            Config::from_args(args(&["--config", file.to_str().unwrap()]), &env(&[])).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("listen_typo") && message.contains("line 2"),
            "{message}"
        );
    }

    #[test]
    fn metrics_are_off_unless_asked_for() {
        assert!(
            Config::from_args(args(&[]), &env(&[]))
                .unwrap()
                .metrics_listen
                .is_none()
        );
        let config = Config::from_args(
            args(&[]),
            &env(&[("KMSD_METRICS_LISTEN", "127.0.0.1:9090")]),
        )
        .unwrap();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9090".parse().unwrap())
        );
    }

    #[test]
    fn security_settings_follow_flag_env_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kmsd.toml");
        std::fs::write(
            &file,
            "tls_cert = \"/file/cert.pem\"\ntls_key = \"/file/key.pem\"\n\
             tls_client_ca = \"/file/ca.pem\"\nallow_plaintext = true\n\
             auth_config = \"/file/auth.toml\"\naudit_log = \"/file/audit.jsonl\"\n",
        )
        .unwrap();
        let file_arg = file.to_str().unwrap();
        let config = Config::from_args(args(&["--config", file_arg]), &env(&[])).unwrap();
        assert_eq!(
            config.tls,
            Some(TlsFiles {
                cert: "/file/cert.pem".into(),
                key: "/file/key.pem".into(),
                client_ca: Some("/file/ca.pem".into()),
            })
        );
        assert!(config.allow_plaintext);
        assert_eq!(config.auth_config, Some(PathBuf::from("/file/auth.toml")));
        assert_eq!(config.audit_log, Some(PathBuf::from("/file/audit.jsonl")));

        let env = env(&[
            ("KMSD_TLS_KEY", "/env/key.pem"),
            ("KMSD_ALLOW_PLAINTEXT", "false"),
            ("KMSD_AUDIT_LOG", "/env/audit.jsonl"),
        ]);
        let config = Config::from_args(
            args(&["--config", file_arg, "--auth-config", "/flag/auth.toml"]),
            &env,
        )
        .unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("/file/cert.pem"));
        assert_eq!(tls.key, PathBuf::from("/env/key.pem"));
        assert!(!config.allow_plaintext, "the env beats the file");
        assert_eq!(config.auth_config, Some(PathBuf::from("/flag/auth.toml")));
        assert_eq!(config.audit_log, Some(PathBuf::from("/env/audit.jsonl")));

        let config =
            Config::from_args(args(&["--config", file_arg, "--allow-plaintext"]), &env).unwrap();
        assert!(config.allow_plaintext, "the flag beats the env");
    }

    #[test]
    fn security_defaults_are_off() {
        let config = Config::from_args(args(&[]), &env(&[])).unwrap();
        assert_eq!(config.tls, None);
        assert!(!config.allow_plaintext);
        assert_eq!(config.auth_config, None);
        assert_eq!(config.audit_log, None);
    }

    #[test]
    fn incomplete_tls_settings_are_refused() {
        for flags in [
            &["--tls-cert", "c.pem"][..],
            &["--tls-key", "k.pem"][..],
            &["--tls-client-ca", "ca.pem"][..],
            &["--tls-key", "k.pem", "--tls-client-ca", "ca.pem"][..],
        ] {
            let err = Config::from_args(args(flags), &env(&[])).unwrap_err();
            assert!(err.to_string().contains("--tls-"), "{flags:?}: {err}");
        }
        let err =
            Config::from_args(args(&[]), &env(&[("KMSD_ALLOW_PLAINTEXT", "yes")])).unwrap_err();
        assert!(err.to_string().contains("KMSD_ALLOW_PLAINTEXT"), "{err}");
        assert!(
            err.to_string().ends_with("[possible values: true, false]"),
            "{err}"
        );
    }

    #[test]
    fn the_store_is_embedded_unless_a_postgres_url_is_given() {
        let config = Config::from_args(args(&["--data-dir", "/d"]), &env(&[])).unwrap();
        assert_eq!(
            config.store_settings(),
            StoreSettings::Embedded {
                data_dir: "/d".into()
            }
        );
        let (_dir, file) = toml_file(
            "root_key_file = \"/keys/root.key\"\n\
             [store]\nurl = \"postgres://kmsd:pw@db:5432/kms?sslmode=verify-full\"\n\
             max_connections = 4\ntimeout_ms = 750\n",
        );
        let config = Config::from_args(args(&["--config", &file]), &env(&[])).unwrap();
        let StoreSettings::Postgres(postgres) = config.store_settings() else {
            panic!("not PostgreSQL: {config:?}");
        };
        assert_eq!(postgres.max_connections, 4);
        assert_eq!(postgres.timeout, Duration::from_millis(750));
        assert!(
            !format!("{config:?}").contains(":pw@"),
            "the password is printed"
        );
        for (flags, says) in [
            (&["--store", "mysql://db/kms"][..], "--store"),
            (&["--store", "postgres://db:port/kms"][..], "--store"),
            (
                &["--store", "postgres://db/kms", "--store-timeout-ms", "0"][..],
                "--store-timeout-ms",
            ),
        ] {
            let err = Config::from_args(args(flags), &env(&[])).unwrap_err();
            assert!(err.to_string().contains(says), "{flags:?}: {err}");
        }
        let config = Config::from_args(
            args(&["--root-key-file", "/keys/root.key"]),
            &env(&[("KMSD_STORE", "postgres://db/kms?sslmode=verify-full")]),
        )
        .unwrap();
        assert!(config.postgres.is_some());
    }

    #[test]
    fn a_remote_store_needs_a_verified_tls_connection_or_a_named_opt_out() {
        let with_store = |url: &str, extra: &[&str]| {
            let mut flags = vec!["--root-key-file", "/keys/root.key", "--store", url];
            flags.extend_from_slice(extra);
            Config::from_args(args(&flags), &env(&[]))
        };
        for url in [
            "postgres://kmsd@db.example:5432/kms",
            "postgres://kmsd@db.example/kms?sslmode=prefer",
            "postgres://kmsd@db.example/kms?sslmode=require",
            "postgres://kmsd@10.0.0.5/kms?sslmode=disable",
        ] {
            let message = with_store(url, &[]).unwrap_err().to_string();
            assert!(
                message.contains("verify-full")
                    && message.contains("--store-allow-insecure-transport"),
                "{url}: {message}"
            );
            assert!(
                !message.contains("kmsd@"),
                "the URL is not repeated: {message}"
            );
            let config = with_store(url, &["--store-allow-insecure-transport"]).unwrap();
            assert!(config.postgres.unwrap().allow_insecure_transport, "{url}");
        }
        for url in [
            "postgres://kmsd@db.example/kms?sslmode=verify-full",
            "postgres://kmsd@db.example/kms?sslmode=verify-ca&sslrootcert=/ca.pem",
            "postgres://kmsd@127.0.0.1/kms",
            "postgres://kmsd@localhost/kms?sslmode=disable",
            "postgres://kmsd@[::1]:5432/kms",
            "postgres://kmsd@%2Fvar%2Frun%2Fpostgresql/kms",
        ] {
            with_store(url, &[]).unwrap_or_else(|err| panic!("{url}: {err}"));
        }
    }

    #[test]
    fn settings_that_need_one_another_are_refused_apart() {
        let refused = |vars: &[(&str, &str)]| {
            Config::from_args(args(&[]), &env(vars))
                .unwrap_err()
                .to_string()
        };
        let accepted = |vars: &[(&str, &str)]| {
            Config::from_args(args(&[]), &env(vars)).unwrap_or_else(|err| panic!("{vars:?}: {err}"))
        };

        assert_eq!(
            refused(&[("KMSD_AUDIT_REQUIRED", "true")]),
            "--audit-required needs --audit-log (the file the records must reach)"
        );
        accepted(&[
            ("KMSD_AUDIT_REQUIRED", "true"),
            ("KMSD_AUDIT_LOG", "/var/log/kmsd/audit.jsonl"),
        ]);

        assert!(
            refused(&[("KMSD_STORE", "postgres://db/kms")])
                .starts_with("--store needs --root-key-file: every replica must load the same")
        );
        accepted(&[
            ("KMSD_STORE", "postgres://db/kms?sslmode=verify-full"),
            ("KMSD_ROOT_KEY_FILE", "/keys/root.key"),
        ]);

        let uri = "pkcs11:token=kmsd;object=root?module-path=/hsm.so&pin-source=file:/pin";
        assert!(
            refused(&[("KMSD_ROOT_KEY_PKCS11", uri)])
                .starts_with("--root-key-pkcs11 needs --root-key-file: the file holding")
        );
        let config = accepted(&[
            ("KMSD_ROOT_KEY_PKCS11", uri),
            ("KMSD_ROOT_KEY_FILE", "/keys/root.wrapped"),
        ]);
        assert!(matches!(
            config.root_key_custody(),
            Some(RootKeyCustody::Pkcs11 { .. })
        ));
        let message = refused(&[
            (
                "KMSD_ROOT_KEY_PKCS11",
                "pkcs11:token=kmsd;object=root?pin-value=1234",
            ),
            ("KMSD_ROOT_KEY_FILE", "/keys/root.wrapped"),
        ]);
        assert!(
            message.starts_with("--root-key-pkcs11: PKCS#11 URI: ") && !message.contains("1234"),
            "{message}"
        );

        let target = "https://127.0.0.1:8443?key-id=alias/root&client-key-file=/s/ck.json\
                      &password-file=/s/pw&ca-file=/s/ca.pem";
        assert!(
            refused(&[("KMSD_ROOT_KEY_KMS", target)])
                .starts_with("--root-key-kms needs --root-key-file: the file holding")
        );
        let config = accepted(&[
            ("KMSD_ROOT_KEY_KMS", target),
            ("KMSD_ROOT_KEY_FILE", "/keys/root.wrapped"),
        ]);
        assert!(matches!(
            config.root_key_custody(),
            Some(RootKeyCustody::Kms { .. })
        ));
        assert!(
            refused(&[
                ("KMSD_ROOT_KEY_KMS", target),
                ("KMSD_ROOT_KEY_PKCS11", uri),
                ("KMSD_ROOT_KEY_FILE", "/keys/root.wrapped"),
            ])
            .starts_with("--root-key-kms and --root-key-pkcs11 both name")
        );
        let message = refused(&[
            ("KMSD_ROOT_KEY_KMS", "https://h?key-id=k&password=hunter2"),
            ("KMSD_ROOT_KEY_FILE", "/keys/root.wrapped"),
        ]);
        assert!(
            message.starts_with("--root-key-kms: KMS endpoint: ") && !message.contains("hunter2"),
            "{message}"
        );

        let message = refused(&[("KMSD_HTTPS_LISTEN", "0.0.0.0:8443")]);
        assert!(
            message.starts_with(
                "refusing to serve the HTTPS gateway on 0.0.0.0:8443, which is not a loopback"
            ) && message.contains("pass --https-tls-cert and --https-tls-key"),
            "{message}"
        );
        refused(&[("KMSD_HTTPS_LISTEN", "10.0.0.7:8443")]);
        for loopback in ["127.0.0.1:8443", "[::1]:8443"] {
            accepted(&[("KMSD_HTTPS_LISTEN", loopback)]);
        }
        accepted(&[
            ("KMSD_HTTPS_LISTEN", "0.0.0.0:8443"),
            ("KMSD_TLS_CERT", "/tls/cert.pem"),
            ("KMSD_TLS_KEY", "/tls/key.pem"),
            ("KMSD_AUTH_CONFIG", "/etc/kmsd/auth.toml"),
        ]);
    }

    #[test]
    fn the_gateway_can_have_its_own_certificate_beside_plaintext_grpc() {
        let from = |vars: &[(&str, &str)]| Config::from_args(args(&[]), &env(vars));
        let mesh = [
            ("KMSD_LISTEN", "0.0.0.0:50051"),
            ("KMSD_ALLOW_PLAINTEXT", "true"),
            ("KMSD_AUTH_CONFIG", "/etc/kmsd/auth.toml"),
            ("KMSD_HTTPS_LISTEN", "0.0.0.0:8443"),
        ];
        let with = |more: &[(&'static str, &'static str)]| {
            mesh.iter().chain(more).copied().collect::<Vec<_>>()
        };
        let config = from(&with(&[
            ("KMSD_HTTPS_TLS_CERT", "/gw/cert.pem"),
            ("KMSD_HTTPS_TLS_KEY", "/gw/key.pem"),
        ]))
        .unwrap();
        assert_eq!(config.tls, None, "gRPC stays plaintext");
        let gateway = CertFiles {
            cert: "/gw/cert.pem".into(),
            key: "/gw/key.pem".into(),
        };
        assert_eq!(config.gateway_tls(), Some(gateway.clone()));
        // Beside gRPC's own TLS, the gateway's wins; without it, gRPC's is shared.
        let both = from(&with(&[
            ("KMSD_HTTPS_TLS_CERT", "/gw/cert.pem"),
            ("KMSD_HTTPS_TLS_KEY", "/gw/key.pem"),
            ("KMSD_TLS_CERT", "/grpc/cert.pem"),
            ("KMSD_TLS_KEY", "/grpc/key.pem"),
        ]))
        .unwrap();
        assert_eq!(both.gateway_tls(), Some(gateway));
        let shared = from(&with(&[
            ("KMSD_TLS_CERT", "/grpc/cert.pem"),
            ("KMSD_TLS_KEY", "/grpc/key.pem"),
        ]))
        .unwrap();
        assert_eq!(
            shared.gateway_tls().map(|files| files.cert),
            Some("/grpc/cert.pem".into())
        );

        for (vars, message) in [
            (
                with(&[("KMSD_HTTPS_TLS_CERT", "/gw/cert.pem")]),
                "--https-tls-cert needs --https-tls-key",
            ),
            (
                with(&[("KMSD_HTTPS_TLS_KEY", "/gw/key.pem")]),
                "--https-tls-key needs --https-tls-cert",
            ),
            (
                vec![
                    ("KMSD_HTTPS_TLS_CERT", "/gw/cert.pem"),
                    ("KMSD_HTTPS_TLS_KEY", "/gw/key.pem"),
                ],
                "--https-tls-cert is the HTTPS gateway's certificate: it needs --https-listen",
            ),
        ] {
            let err = from(&vars).unwrap_err().to_string();
            assert!(err.starts_with(message), "{vars:?}: {err}");
        }
    }

    #[test]
    fn audit_targets_and_the_replica_are_checked() {
        let from = |vars: &[(&str, &str)]| Config::from_args(args(&[]), &env(vars));
        let required = ("KMSD_AUDIT_REQUIRED", "true");
        for target in [
            "-",
            "stdout",
            "syslog:///dev/log",
            "/var/log/kmsd/audit.jsonl",
        ] {
            from(&[("KMSD_AUDIT_LOG", target), required])
                .unwrap_or_else(|err| panic!("{target}: {err}"));
        }
        from(&[("KMSD_AUDIT_LOG", "syslog://siem.example:514")]).unwrap();
        let err = from(&[("KMSD_AUDIT_LOG", "syslog://siem.example:514"), required])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--audit-required cannot be kept with --audit-log syslog://siem"),
            "{err}"
        );
        let err = from(&[("KMSD_AUDIT_LOG", "syslog://siem.example")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("syslog:///dev/log"), "{err}");

        let config = from(&[("KMSD_REPLICA_ID", "kmsd-0")]).unwrap();
        assert_eq!(config.replica, "kmsd-0");
        let default = from(&[]).unwrap().replica;
        assert!(!default.is_empty() && !default.contains(' '), "{default:?}");
        for bad in ["two words", "tab\there", &"x".repeat(256)] {
            let err = from(&[("KMSD_REPLICA_ID", bad)]).unwrap_err().to_string();
            assert!(err.starts_with("--replica-id"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn an_open_server_is_refused_on_the_network() {
        let from = |vars: &[(&str, &str)]| Config::from_args(args(&[]), &env(vars));
        for vars in [
            &[
                ("KMSD_LISTEN", "0.0.0.0:50051"),
                ("KMSD_ALLOW_PLAINTEXT", "true"),
            ][..],
            &[
                ("KMSD_LISTEN", "10.0.0.7:50051"),
                ("KMSD_ALLOW_PLAINTEXT", "true"),
            ][..],
            &[
                ("KMSD_HTTPS_LISTEN", "0.0.0.0:8443"),
                ("KMSD_TLS_CERT", "/tls/cert.pem"),
                ("KMSD_TLS_KEY", "/tls/key.pem"),
            ][..],
        ] {
            let message = from(vars).unwrap_err().to_string();
            assert!(
                message.contains("without access control")
                    && message.contains("--auth-config")
                    && message.contains("--allow-unauthenticated-network"),
                "{vars:?}: {message}"
            );
        }
        // Access control on, or the loud opt-out, or loopback: accepted.
        from(&[
            ("KMSD_LISTEN", "0.0.0.0:50051"),
            ("KMSD_ALLOW_PLAINTEXT", "true"),
            ("KMSD_AUTH_CONFIG", "/etc/kmsd/auth.toml"),
        ])
        .unwrap();
        from(&[
            ("KMSD_LISTEN", "0.0.0.0:50051"),
            ("KMSD_ALLOW_PLAINTEXT", "true"),
            ("KMSD_ALLOW_UNAUTHENTICATED_NETWORK", "true"),
        ])
        .unwrap();
        from(&[
            ("KMSD_HTTPS_LISTEN", "0.0.0.0:8443"),
            ("KMSD_TLS_CERT", "/tls/cert.pem"),
            ("KMSD_TLS_KEY", "/tls/key.pem"),
            ("KMSD_ALLOW_UNAUTHENTICATED_NETWORK", "true"),
        ])
        .unwrap();
        from(&[("KMSD_LISTEN", "[::1]:50051")]).unwrap();
    }

    #[test]
    fn fixed_seed_material_is_refused_on_the_network() {
        let from = |vars: &[(&str, &str)]| Config::from_args(args(&[]), &env(vars));
        let auth = ("KMSD_AUTH_CONFIG", "/etc/kmsd/auth.toml");
        let fixed = ("KMSD_DEV_FIXED_SEED_MATERIAL", "true");
        for vars in [
            &[
                auth,
                fixed,
                ("KMSD_LISTEN", "0.0.0.0:50051"),
                ("KMSD_ALLOW_PLAINTEXT", "true"),
            ][..],
            &[
                auth,
                fixed,
                ("KMSD_HTTPS_LISTEN", "10.1.2.3:8443"),
                ("KMSD_TLS_CERT", "/tls/cert.pem"),
                ("KMSD_TLS_KEY", "/tls/key.pem"),
            ][..],
        ] {
            let message = from(vars).unwrap_err().to_string();
            assert!(
                message.contains("--dev-fixed-seed-material") && message.contains("loopback"),
                "{vars:?}: {message}"
            );
        }
        from(&[fixed, ("KMSD_LISTEN", "127.0.0.1:50051")]).unwrap();
        from(&[
            auth,
            ("KMSD_LISTEN", "0.0.0.0:50051"),
            ("KMSD_ALLOW_PLAINTEXT", "true"),
        ])
        .unwrap();
    }

    #[test]
    fn a_config_built_in_code_is_checked_the_same_way() {
        let config = Config {
            audit_required: true,
            ..Config::default()
        };
        let err = config.check_combinations().unwrap_err();
        assert!(
            err.to_string().starts_with("--audit-required needs"),
            "{err}"
        );
        Config::default().check_combinations().unwrap();
    }

    #[test]
    fn pool_depth_zero_turns_the_pool_off() {
        let config = Config::from_args(args(&["--pool-depth", "0"]), &env(&[])).unwrap();
        for spec in KeyPairSpec::ALL {
            assert_eq!(config.pool.depth(spec), 0);
        }
    }

    #[test]
    fn each_setting_has_a_flag_a_variable_and_a_file_key_that_agree() {
        let defaults = Settings::default();
        let declared = declared();
        assert!(declared.len() >= 18, "{} settings", declared.len());
        for arg in &declared {
            let long = arg.get_long().expect("every setting has a long flag");
            let var = arg.get_env().expect("every setting has a variable");
            assert_eq!(
                var.to_str().unwrap(),
                format!("KMSD_{}", long.to_uppercase().replace('-', "_")),
                "--{long}"
            );
            if long == "config" {
                continue; // names the file: not a key in it
            }
            // A value unlike the default, as TOML and as a flag would spell it.
            let toml_value = match arg.get_value_names().unwrap()[0].as_str() {
                "ADDR" => "\"127.0.0.1:4444\"",
                "FILE" | "DIR" => "\"/sample/path\"",
                "N" | "SECONDS" | "MILLISECONDS" | "DAYS" => "7",
                "URL" => "\"postgres://kmsd@db.example:5432/kms\"",
                "URI" => "\"pkcs11:token=t;object=k?module-path=/m.so&pin-source=file:/pin\"",
                "ENDPOINT" => {
                    "\"https://kms.example:8443?key-id=k&client-key-file=/ck&password-file=/pw&ca-file=/ca\""
                }
                "FORMAT" => "\"json\"",
                "NAME" => "\"replica-7\"",
                "FILTER" => "\"debug\"",
                "BOOL" => "true",
                other => panic!("--{long}: no sample for {other}"),
            };
            let value = toml_value.trim_matches('"');
            let flag = format!("--{long}={value}");
            let from_flag = Settings::resolve(args(&[&flag]), &env(&[])).unwrap();
            let from_env =
                Settings::resolve(args(&[]), &env(&[(var.to_str().unwrap(), value)])).unwrap();
            let (_dir, file) = toml_file(&format!("{} = {toml_value}\n", toml_key(arg)));
            let from_file = Settings::resolve(args(&["--config", &file]), &env(&[])).unwrap();
            assert_ne!(from_flag, defaults, "{flag} changes nothing");
            assert_eq!(from_env, from_flag, "{var:?} and {flag}");
            let from_file = Settings {
                config: None,
                ..from_file
            };
            assert_eq!(from_file, from_flag, "{} and {flag}", toml_key(arg));
        }
    }

    #[test]
    fn each_kind_of_setting_follows_flag_env_file_default() {
        // (flag, then the file's, the variable's and the flag's value, then what the
        // resolved setting shows for nothing set and for each of those three values).
        type Shown = fn(&Config) -> String;
        let cases: [(&str, [&str; 3], Shown, [&str; 4]); 5] = [
            (
                "listen",
                ["\"127.0.0.1:1\"", "127.0.0.1:2", "127.0.0.1:3"],
                |c| c.listen.to_string(),
                [
                    "127.0.0.1:50051",
                    "127.0.0.1:1",
                    "127.0.0.1:2",
                    "127.0.0.1:3",
                ],
            ),
            (
                "data-dir",
                ["\"/file\"", "/env", "/flag"],
                |c| c.data_dir.display().to_string(),
                ["./kmsd-data", "/file", "/env", "/flag"],
            ),
            (
                "keypair-concurrency",
                ["2", "3", "4"],
                |c| c.keypair_concurrency.to_string(),
                ["1", "2", "3", "4"],
            ),
            (
                "allow-plaintext",
                ["true", "false", "true"],
                |c| c.allow_plaintext.to_string(),
                ["false", "true", "false", "true"],
            ),
            (
                "log-format",
                ["\"json\"", "text", "json"],
                |c| format!("{:?}", c.log_format),
                ["Text", "Json", "Text", "Json"],
            ),
        ];
        for (long, [in_file, in_env, in_flag], shown, expected) in cases {
            let key = long.replace('-', "_");
            let var = format!("KMSD_{}", key.to_uppercase());
            let (_dir, file) = toml_file(&format!("{key} = {in_file}\n"));
            let flag = format!("--{long}={in_flag}");
            let with_env = env(&[(&var, in_env)]);
            let with_empty_env = env(&[(&var, "")]);
            let seen = [
                Config::from_args(args(&[]), &env(&[])),
                Config::from_args(args(&["--config", &file]), &with_empty_env),
                Config::from_args(args(&["--config", &file]), &with_env),
                Config::from_args(args(&["--config", &file, &flag]), &with_env),
            ]
            .map(|config| shown(&config.unwrap()));
            assert_eq!(
                seen, expected,
                "--{long}: default, file, env over file, flag over env"
            );
        }
    }

    #[test]
    fn help_shows_every_variable_and_default() {
        let help_for = |flag: &str| {
            let err = Config::from_args(args(&[flag]), &env(&[])).unwrap_err();
            let ConfigError::Args(err) = err else {
                panic!("{flag} is not answered by clap: {err}");
            };
            assert_eq!(err.kind(), ErrorKind::DisplayHelp, "{flag}");
            err.to_string()
        };
        let (short, long) = (help_for("-h"), help_for("--help"));
        for help in [&short, &long] {
            for arg in declared() {
                let flag = arg.get_long().unwrap();
                let var = arg.get_env().unwrap().to_str().unwrap();
                assert!(help.contains(&format!("[env: {var}]")), "{var}:\n{help}");
                for default in arg.get_default_values() {
                    let shown = format!("[default: {}]", default.to_str().unwrap());
                    assert!(help.contains(&shown), "--{flag} {shown}:\n{help}");
                }
            }
        }
        for line in [
            "on [env: KMSD_LISTEN] [default: 127.0.0.1:50051]",
            "store [env: KMSD_DATA_DIR] [default: ./kmsd-data]",
            "Throttling [env: KMSD_KEYPAIR_CONCURRENCY] [default: 1]",
            "refused [env: KMSD_ALLOW_PLAINTEXT] [default: false]",
        ] {
            assert!(short.contains(line), "{line}:\n{short}");
        }
    }

    #[test]
    fn the_readme_table_lists_every_flag_with_its_variable() {
        // Rows look like "| `--listen ADDR` | `KMSD_LISTEN` | ... |".
        let rows: BTreeMap<&str, &str> = include_str!("../README.md")
            .lines()
            .filter_map(|row| {
                let flag = row.strip_prefix("| `--")?.split([' ', '`']).next()?;
                Some((flag, row))
            })
            .collect();
        for arg in declared() {
            let long = arg.get_long().unwrap();
            let var = arg.get_env().unwrap().to_str().unwrap();
            let row = rows
                .get(long)
                .unwrap_or_else(|| panic!("README.md has no row for --{long}"));
            assert!(row.contains(&format!("| `{var}` |")), "{row}");
        }
    }

    #[test]
    fn unknown_file_keys_are_refused_with_line_and_column() {
        for (text, key, at) in [
            (
                "log = \"info\"\nlisten_typo = 3\n",
                "listen_typo",
                "line 2, column 1",
            ),
            (
                "[pool]\nworkers = 2\ndepht = 3\n",
                "depht",
                "line 3, column 1",
            ),
            ("config = \"/other.toml\"\n", "config", "line 1, column 1"),
        ] {
            let (_dir, file) = toml_file(text);
            let err = Config::from_args(args(&["--config", &file]), &env(&[])).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, ConfigError::FileParse { .. })
                    && message.contains(&format!("unknown field `{key}`"))
                    && message.contains(at),
                "{text:?}: {message}"
            );
        }
    }

    #[test]
    fn the_config_file_can_be_named_by_its_variable() {
        let (_dir, file) = toml_file("keypair_concurrency = 5\n");
        let config = Config::from_args(args(&[]), &env(&[("KMSD_CONFIG", &file)])).unwrap();
        assert_eq!(config.keypair_concurrency, 5);
    }

    #[test]
    fn the_shipped_kubernetes_config_parses() {
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/kubernetes/base/kmsd.toml"
        );
        Config::from_args(args(&["--config", file]), &env(&[])).unwrap();
        // PostgreSQL mode: the URL comes from KMSD_STORE (a Secret), the rest from here.
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/kubernetes/postgres/kmsd.toml"
        );
        let config = Config::from_args(
            args(&["--config", file]),
            &env(&[("KMSD_STORE", "postgres://kmsd@db/kms?sslmode=verify-full")]),
        )
        .unwrap();
        assert!(config.postgres.is_some());
    }
}
