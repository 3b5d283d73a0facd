//! Configuration: one [`Config`], filled from flags, then `KMSD_*` environment
//! variables, then an optional TOML file (`--config`), then the embedded defaults —
//! the first that sets a value wins. The environment is read through [`Env`], so
//! tests never touch the real one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::crypto::keygen::KeyPairSpec;
use crate::keypool::PoolConfig;

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
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("log format must be text or json, got {other:?}")),
        }
    }
}

/// The command line. Every flag can also be set as `KMSD_<FLAG>` (upper case,
/// dashes as underscores) or in the `--config` file (the flag name with underscores).
#[derive(Debug, Default, Parser)]
#[command(
    name = "kmsd",
    version,
    about = "kmsd: a self-hosted Key Management Service over gRPC"
)]
pub struct Cli {
    /// TOML file with settings (flags and KMSD_* variables override it). [env: KMSD_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to serve gRPC on. [default: 127.0.0.1:50051] [env: KMSD_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory of the embedded key store. [default: ./kmsd-data] [env: KMSD_DATA_DIR]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// File holding the 32-byte root key (raw, hex or base64). Without it the server uses
    /// <data-dir>/root.key, created on first start: for development only. [env: KMSD_ROOT_KEY_FILE]
    #[arg(long, value_name = "FILE")]
    pub root_key_file: Option<PathBuf>,
    /// Log format: text or json. [default: text] [env: KMSD_LOG_FORMAT]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log filter, in tracing's EnvFilter syntax. [default: info] [env: KMSD_LOG]
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
    /// Ready key pairs kept per spec; 0 turns the pool off. Per-spec depths can be set
    /// in the config file's [pool.depths]. [default: see docs/pool.md] [env: KMSD_POOL_DEPTH]
    #[arg(long, value_name = "N")]
    pub pool_depth: Option<usize>,
    /// Key generation threads. [default: the number of cores] [env: KMSD_POOL_WORKERS]
    #[arg(long, value_name = "N")]
    pub pool_workers: Option<usize>,
    /// Data key pair calls served at once; more are rejected with Rejected.Throttling.
    /// [default: 1] [env: KMSD_KEYPAIR_CONCURRENCY]
    #[arg(long, value_name = "N")]
    pub keypair_concurrency: Option<usize>,
    /// Seconds between passes of automatic rotation and key destruction.
    /// [default: 60] [env: KMSD_MAINTENANCE_INTERVAL_SECS]
    #[arg(long, value_name = "SECONDS")]
    pub maintenance_interval_secs: Option<u64>,
    /// Seconds in-flight calls get to finish after SIGTERM. [default: 30] [env: KMSD_SHUTDOWN_GRACE_SECS]
    #[arg(long, value_name = "SECONDS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Address to serve Prometheus metrics on, at /metrics. [default: off] [env: KMSD_METRICS_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// PEM certificate chain to serve TLS with (needs --tls-key). [env: KMSD_TLS_CERT]
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert. [env: KMSD_TLS_KEY]
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): require and verify client certificates against them (mTLS).
    /// Needs --tls-cert. [env: KMSD_TLS_CLIENT_CA]
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve plaintext on a non-loopback address (e.g. behind a mesh sidecar that
    /// terminates mTLS). Without it such a start is refused. [env: KMSD_ALLOW_PLAINTEXT]
    #[arg(long)]
    pub allow_plaintext: bool,
    /// TOML file of principals and their grants; turns access control on. Without it the
    /// server is open to anyone who can connect. [env: KMSD_AUTH_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub auth_config: Option<PathBuf>,
    /// Append one JSON line per RPC to this file. [env: KMSD_AUDIT_LOG]
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
}

/// The settings file: the same names as the flags, with underscores, plus per-spec
/// pool depths.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    root_key_file: Option<PathBuf>,
    log_format: Option<LogFormat>,
    log: Option<String>,
    keypair_concurrency: Option<usize>,
    maintenance_interval_secs: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    metrics_listen: Option<SocketAddr>,
    pool: Option<FilePool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    allow_plaintext: Option<bool>,
    auth_config: Option<PathBuf>,
    audit_log: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePool {
    depth: Option<usize>,
    workers: Option<usize>,
    /// e.g. `RSA_4096 = 1`.
    #[serde(default)]
    depths: BTreeMap<String, usize>,
}

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

/// Every setting of the server, resolved.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to serve gRPC.
    pub listen: SocketAddr,
    /// The embedded store's directory.
    pub data_dir: PathBuf,
    /// The root key file; `None` means `<data_dir>/root.key`, created if missing.
    pub root_key_file: Option<PathBuf>,
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
    /// TLS (and mTLS) settings; `None` serves plaintext.
    pub tls: Option<TlsFiles>,
    /// Whether plaintext may be served on a non-loopback address.
    pub allow_plaintext: bool,
    /// The principals file; `None` runs without access control.
    pub auth_config: Option<PathBuf>,
    /// The audit log file; `None` writes no audit log.
    pub audit_log: Option<PathBuf>,
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

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("./kmsd-data"),
            root_key_file: None,
            log_format: LogFormat::Text,
            log: "info".to_owned(),
            pool: PoolConfig::default(),
            keypair_concurrency: 1,
            maintenance_interval: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            metrics_listen: None,
            tls: None,
            allow_plaintext: false,
            auth_config: None,
            audit_log: None,
        }
    }
}

fn env_value<T: FromStr>(env: &dyn Env, name: &str) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match env.var(name) {
        None => Ok(None),
        Some(raw) if raw.is_empty() => Ok(None),
        Some(raw) => raw
            .parse()
            .map(Some)
            .map_err(|err: T::Err| ConfigError::Env {
                name: name.to_owned(),
                message: err.to_string(),
            }),
    }
}

impl Config {
    /// Resolves the configuration from parsed flags, an environment and the file the
    /// flags or environment name.
    pub fn resolve(cli: Cli, env: &dyn Env) -> Result<Self, ConfigError> {
        let config_path = match cli.config {
            Some(path) => Some(path),
            None => env_value::<PathBuf>(env, "KMSD_CONFIG")?,
        };
        let file = match config_path {
            Some(path) => load_file(&path)?,
            None => FileConfig::default(),
        };
        let defaults = Config::default();
        let file_pool = file.pool.unwrap_or_default();

        macro_rules! pick {
            ($flag:expr, $env:literal, $file:expr, $default:expr) => {
                match $flag {
                    Some(value) => value,
                    None => match env_value(env, $env)? {
                        Some(value) => value,
                        None => $file.unwrap_or($default),
                    },
                }
            };
        }

        let pool_depth: Option<usize> = match cli.pool_depth {
            Some(depth) => Some(depth),
            None => env_value(env, "KMSD_POOL_DEPTH")?.or(file_pool.depth),
        };
        let pool_workers: usize = pick!(
            cli.pool_workers,
            "KMSD_POOL_WORKERS",
            file_pool.workers,
            defaults.pool.workers
        );
        let mut pool = match pool_depth {
            Some(depth) => PoolConfig::uniform(depth),
            None => PoolConfig::default_for_workers(pool_workers),
        };
        pool.workers = pool_workers;
        for (name, depth) in &file_pool.depths {
            let spec: KeyPairSpec = name.parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "[pool.depths]: unknown key pair spec {name:?}; valid: RSA_2048, RSA_3072, RSA_4096, EC_P256, EC_P256K"
                ))
            })?;
            pool.depths.insert(spec, *depth);
        }

        macro_rules! pick_path {
            ($flag:expr, $env:literal, $file:expr) => {
                match $flag {
                    Some(path) => Some(path),
                    None => env_value::<PathBuf>(env, $env)?.or($file),
                }
            };
        }
        let tls_cert = pick_path!(cli.tls_cert, "KMSD_TLS_CERT", file.tls_cert);
        let tls_key = pick_path!(cli.tls_key, "KMSD_TLS_KEY", file.tls_key);
        let tls_client_ca = pick_path!(cli.tls_client_ca, "KMSD_TLS_CLIENT_CA", file.tls_client_ca);
        let tls = match (tls_cert, tls_key, tls_client_ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), client_ca) => Some(TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (Some(_), None, _) => {
                return Err(ConfigError::Invalid(
                    "--tls-cert needs --tls-key (the certificate's private key)".into(),
                ));
            }
            (None, Some(_), _) => {
                return Err(ConfigError::Invalid(
                    "--tls-key needs --tls-cert (the certificate chain)".into(),
                ));
            }
            (None, None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "--tls-client-ca (mTLS) needs --tls-cert and --tls-key".into(),
                ));
            }
        };
        let allow_plaintext = if cli.allow_plaintext {
            true
        } else {
            match env_value::<bool>(env, "KMSD_ALLOW_PLAINTEXT")? {
                Some(value) => value,
                None => file.allow_plaintext.unwrap_or(defaults.allow_plaintext),
            }
        };

        let config = Config {
            listen: pick!(cli.listen, "KMSD_LISTEN", file.listen, defaults.listen),
            data_dir: pick!(
                cli.data_dir,
                "KMSD_DATA_DIR",
                file.data_dir,
                defaults.data_dir
            ),
            root_key_file: match cli.root_key_file {
                Some(path) => Some(path),
                None => env_value(env, "KMSD_ROOT_KEY_FILE")?.or(file.root_key_file),
            },
            log_format: pick!(
                cli.log_format,
                "KMSD_LOG_FORMAT",
                file.log_format,
                defaults.log_format
            ),
            log: pick!(cli.log, "KMSD_LOG", file.log, defaults.log),
            pool,
            keypair_concurrency: pick!(
                cli.keypair_concurrency,
                "KMSD_KEYPAIR_CONCURRENCY",
                file.keypair_concurrency,
                defaults.keypair_concurrency
            ),
            maintenance_interval: Duration::from_secs(pick!(
                cli.maintenance_interval_secs,
                "KMSD_MAINTENANCE_INTERVAL_SECS",
                file.maintenance_interval_secs,
                defaults.maintenance_interval.as_secs()
            )),
            shutdown_grace: Duration::from_secs(pick!(
                cli.shutdown_grace_secs,
                "KMSD_SHUTDOWN_GRACE_SECS",
                file.shutdown_grace_secs,
                defaults.shutdown_grace.as_secs()
            )),
            metrics_listen: match cli.metrics_listen {
                Some(addr) => Some(addr),
                None => env_value(env, "KMSD_METRICS_LISTEN")?.or(file.metrics_listen),
            },
            tls,
            allow_plaintext,
            auth_config: pick_path!(cli.auth_config, "KMSD_AUTH_CONFIG", file.auth_config),
            audit_log: pick_path!(cli.audit_log, "KMSD_AUDIT_LOG", file.audit_log),
        };
        config.validate()?;
        Ok(config)
    }

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
        if self.pool.workers == 0 {
            return Err(ConfigError::Invalid(
                "--pool-workers must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The root key file to use: the configured one or `<data_dir>/root.key`.
    pub fn root_key_path(&self) -> PathBuf {
        self.root_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("root.key"))
    }
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
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

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("kmsd").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = Config::resolve(cli(&[]), &env(&[])).unwrap();
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
        let config = Config::resolve(
            cli(&["--config", file_arg, "--keypair-concurrency", "4"]),
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
        let err = Config::resolve(cli(&[]), &env(&[("KMSD_LISTEN", "nowhere")])).unwrap_err();
        assert!(err.to_string().contains("KMSD_LISTEN"), "{err}");
        let err = Config::resolve(cli(&["--keypair-concurrency", "0"]), &env(&[])).unwrap_err();
        assert!(err.to_string().contains("keypair-concurrency"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:1\"\nlisten_typo = 3\n").unwrap();
        let err =
            Config::resolve(cli(&["--config", file.to_str().unwrap()]), &env(&[])).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("listen_typo") && message.contains("line 2"),
            "{message}"
        );
    }

    #[test]
    fn metrics_are_off_unless_asked_for() {
        assert!(
            Config::resolve(cli(&[]), &env(&[]))
                .unwrap()
                .metrics_listen
                .is_none()
        );
        let config =
            Config::resolve(cli(&[]), &env(&[("KMSD_METRICS_LISTEN", "127.0.0.1:9090")])).unwrap();
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
        let config = Config::resolve(cli(&["--config", file_arg]), &env(&[])).unwrap();
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
        let config = Config::resolve(
            cli(&["--config", file_arg, "--auth-config", "/flag/auth.toml"]),
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
            Config::resolve(cli(&["--config", file_arg, "--allow-plaintext"]), &env).unwrap();
        assert!(config.allow_plaintext, "the flag beats the env");
    }

    #[test]
    fn security_defaults_are_off() {
        let config = Config::resolve(cli(&[]), &env(&[])).unwrap();
        assert_eq!(config.tls, None);
        assert!(!config.allow_plaintext);
        assert_eq!(config.auth_config, None);
        assert_eq!(config.audit_log, None);
    }

    #[test]
    fn incomplete_tls_settings_are_refused() {
        for args in [
            &["--tls-cert", "c.pem"][..],
            &["--tls-key", "k.pem"][..],
            &["--tls-client-ca", "ca.pem"][..],
            &["--tls-key", "k.pem", "--tls-client-ca", "ca.pem"][..],
        ] {
            let err = Config::resolve(cli(args), &env(&[])).unwrap_err();
            assert!(err.to_string().contains("--tls-"), "{args:?}: {err}");
        }
        let err = Config::resolve(cli(&[]), &env(&[("KMSD_ALLOW_PLAINTEXT", "yes")])).unwrap_err();
        assert!(err.to_string().contains("KMSD_ALLOW_PLAINTEXT"), "{err}");
    }

    #[test]
    fn pool_depth_zero_turns_the_pool_off() {
        let config = Config::resolve(cli(&["--pool-depth", "0"]), &env(&[])).unwrap();
        for spec in KeyPairSpec::ALL {
            assert_eq!(config.pool.depth(spec), 0);
        }
    }
}
