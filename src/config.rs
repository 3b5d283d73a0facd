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
use crate::crypto::pool::PoolConfig;

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
    pool: Option<FilePool>,
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
    fn pool_depth_zero_turns_the_pool_off() {
        let config = Config::resolve(cli(&["--pool-depth", "0"]), &env(&[])).unwrap();
        for spec in KeyPairSpec::ALL {
            assert_eq!(config.pool.depth(spec), 0);
        }
    }
}
