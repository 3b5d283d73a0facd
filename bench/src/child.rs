//! The server under test: the real `kmsd` binary as a child process.
//!
//! The bench runs the `kmsd` built beside it (`target/release/kmsd` for
//! `cargo run --release -p kmsd-bench`: build it first with
//! `cargo build --release --bin kmsd`) on 127.0.0.1:0 with its default pool, a root
//! key file of its own and a fresh data directory, so the server's memory and CPU are
//! its own and it runs exactly as deployed. The addresses come from its JSON log
//! (`kmsd listening`, the HTTPS gateway's and the metrics' lines); the pool's state
//! from its Prometheus endpoint (`kmsd_pool_*`), which the bench polls while it waits
//! (untimed) for pairs to be ready.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kmsd::crypto::keygen::KeyPairSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT_LIMIT: Duration = Duration::from_secs(120);

/// The `kmsd` binary of the bench's own build profile: `target/<profile>/kmsd`, beside
/// the bench's executable.
pub fn kmsd_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let kmsd = exe
        .parent()
        .ok_or("the bench's executable has no directory")?
        .join(format!("kmsd{}", std::env::consts::EXE_SUFFIX));
    if kmsd.is_file() {
        Ok(kmsd)
    } else {
        Err(format!(
            "the bench runs the kmsd binary, and {} does not exist: build it first \
             (`cargo build --release --bin kmsd` for `cargo run --release -p kmsd-bench`)",
            kmsd.display()
        ))
    }
}

/// `VmRSS` and `VmHWM` in KiB from a `/proc/PID/status` file.
pub fn rss_kib(status: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(status).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time (user + system) a process has used so far, in seconds, from
/// `/proc/PID/stat` (clock ticks of 1/100 s).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// One pool counter snapshot of a spec, read from the server's metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpecCounters {
    /// Configured depth.
    pub capacity: u64,
    /// Pairs ready now.
    pub ready: u64,
    /// Served from the queue at once.
    pub hits: u64,
    /// Generated on the request path.
    pub misses: u64,
}

/// The parent's handle on the child server.
pub struct ChildServer {
    child: Child,
    /// Where it listens (gRPC).
    pub addr: String,
    https: String,
    metrics: String,
    /// From spawn to `kmsd listening` in its log, ms.
    pub listening_ms: f64,
    spawned: Instant,
    dir: PathBuf,
}

impl ChildServer {
    /// Spawns `kmsd` on a fresh data directory under the system temp dir, with the
    /// HTTPS gateway and the metrics endpoint on 127.0.0.1:0, and waits until it
    /// listens.
    pub fn spawn(kmsd: &Path) -> Result<Self, String> {
        Self::spawn_with(kmsd, &[])
    }

    /// [`Self::spawn`] with `extra` arguments after the bench's own (e.g. a higher
    /// `--keypair-concurrency` for the saturation section).
    pub fn spawn_with(kmsd: &Path, extra: &[&str]) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "kmsd-bench-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("temp dir: {e}"))?;
        let root_key = dir.join("root.key");
        write_root_key(&root_key)?;
        let log = dir.join("kmsd.log");
        let log_file = std::fs::File::create(&log).map_err(|e| format!("kmsd log: {e}"))?;
        let spawned = Instant::now();
        let mut child = Command::new(kmsd)
            .args(["--listen", "127.0.0.1:0", "--https-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--root-key-file")
            .arg(&root_key)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", kmsd.display()))?;
        let deadline = spawned + Duration::from_secs(30);
        let (addr, listening_ms) = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(addr) = logged(&text, "kmsd listening", "local_addr") {
                break (addr, spawned.elapsed().as_secs_f64() * 1e3);
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("kmsd exited ({status}):\n{text}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("kmsd did not report its address:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        // Both are bound (and logged) before the gRPC listener.
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let https = logged(&text, "kmsd https gateway listening", "local_addr");
        let metrics = logged(&text, "serving Prometheus metrics at /metrics", "addr");
        let (Some(https), Some(metrics)) = (https, metrics) else {
            let _ = child.kill();
            return Err(format!(
                "kmsd did not log its gateway and metrics addresses:\n{text}"
            ));
        };
        Ok(Self {
            child,
            addr,
            https,
            metrics,
            listening_ms,
            spawned,
            dir,
        })
    }

    /// The HTTPS gateway's address and the development certificate it serves.
    pub fn https(&self) -> (String, PathBuf) {
        (
            self.https.clone(),
            self.dir.join("data").join("https-dev-cert.pem"),
        )
    }

    /// The child's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The pool counters of every spec, from the server's metrics.
    pub async fn pool(&self) -> Result<HashMap<String, SpecCounters>, String> {
        let text = scrape(&self.metrics).await?;
        Ok(pool_counters(&text))
    }

    /// The pool counters of `spec`.
    pub async fn counters(&self, spec: KeyPairSpec) -> Result<SpecCounters, String> {
        Ok(self
            .pool()
            .await?
            .get(spec.as_str())
            .copied()
            .unwrap_or_default())
    }

    /// Polls the metrics every millisecond until `cond` holds of the pool (the bench's
    /// own waits are never timed); `timeout` after two minutes.
    async fn wait_until(
        &self,
        what: &str,
        cond: impl Fn(&HashMap<String, SpecCounters>) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + WAIT_LIMIT;
        while !cond(&self.pool().await?) {
            if Instant::now() > deadline {
                return Err(format!("{what}: timeout"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Waits until `spec` has `n` pairs ready.
    pub async fn wait_ready(&self, spec: KeyPairSpec, n: usize) -> Result<(), String> {
        self.wait_until("wait-ready", |pool| {
            pool.get(spec.as_str()).is_some_and(|c| c.ready >= n as u64)
        })
        .await
    }

    /// Waits until every pooled spec has a pair (`primed`) or the pairs its queue
    /// holds at rest (`full`: all of them for RSA, more than half for the cheap specs,
    /// [`kmsd::keypool::ready_at_rest`]); returns ms since the server was spawned.
    pub async fn wait_ms(&self, what: &str) -> Result<f64, String> {
        let full = what == "wait-full";
        self.wait_until(what, |pool| {
            pool.iter().all(|(spec, c)| {
                let wanted = match spec.parse::<KeyPairSpec>() {
                    Ok(spec) if full => {
                        let capacity = usize::try_from(c.capacity).unwrap_or(usize::MAX);
                        kmsd::keypool::ready_at_rest(spec, capacity) as u64
                    }
                    _ if full => c.capacity,
                    _ => c.capacity.min(1),
                };
                c.ready >= wanted
            })
        })
        .await?;
        Ok(self.spawned.elapsed().as_secs_f64() * 1e3)
    }

    /// The pool the child runs, described for the report: its workers (kmsd's
    /// default, one per core) and its depths (from its metrics).
    pub async fn pool_description(&self, cores: usize) -> Result<String, String> {
        let pool = self.pool().await?;
        let depths: Vec<String> = KeyPairSpec::ALL
            .into_iter()
            .map(|s| {
                let depth = pool.get(s.as_str()).map_or(0, |c| c.capacity);
                format!("{s} {depth}")
            })
            .collect();
        Ok(format!("{cores} workers; depths {}", depths.join(", ")))
    }

    /// Stops the child (SIGTERM: it drains and closes its store) and removes its data
    /// directory.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = std::fs::remove_dir_all(&self.dir);
            return;
        }
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A bench that stops early (a failed section) leaves no server behind: one still
/// running would skew every later measurement on the machine.
impl Drop for ChildServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// A fresh 32-byte root key, owner-only (kmsd refuses a root key file others may read).
fn write_root_key(path: &Path) -> Result<(), String> {
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|e| format!("root key: {e}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, &key));
    key.fill(0);
    written.map_err(|e| format!("root key: {e}"))
}

/// The address field `field` of the first JSON log line whose message is `message`.
fn logged(log: &str, message: &str, field: &str) -> Option<String> {
    log.lines().find_map(|line| {
        let line: serde_json::Value = serde_json::from_str(line).ok()?;
        let fields = &line["fields"];
        if fields["message"] != message {
            return None;
        }
        Some(fields[field].as_str()?.to_owned())
    })
}

/// `GET /metrics` from `addr`: the body, in the Prometheus text format.
async fn scrape(addr: &str) -> Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("metrics at {addr}: {e}"))?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("metrics: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .map_err(|e| format!("metrics: {e}"))?;
    Ok(response
        .split_once("\r\n\r\n")
        .map_or(response.as_str(), |(_, body)| body)
        .to_owned())
}

/// The `kmsd_pool_*` series of a metrics page, by spec.
fn pool_counters(text: &str) -> HashMap<String, SpecCounters> {
    let mut pool: HashMap<String, SpecCounters> = HashMap::new();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((name, labels)) = series.split_once("{spec=\"") else {
            continue;
        };
        let (Some(spec), Ok(value)) = (labels.strip_suffix("\"}"), value.parse::<f64>()) else {
            continue;
        };
        if !name.starts_with("kmsd_pool_") {
            continue;
        }
        let counters = pool.entry(spec.to_owned()).or_default();
        let value = value as u64;
        match name {
            "kmsd_pool_capacity" => counters.capacity = value,
            "kmsd_pool_ready" => counters.ready = value,
            "kmsd_pool_hits_total" => counters.hits = value,
            "kmsd_pool_misses_total" => counters.misses = value,
            _ => {}
        }
    }
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_series_are_read_by_spec() {
        let text = "# TYPE kmsd_pool_ready gauge\n\
                    kmsd_pool_ready{spec=\"EC_P256\"} 3\n\
                    kmsd_pool_capacity{spec=\"EC_P256\"} 8\n\
                    kmsd_pool_hits_total{spec=\"EC_P256\"} 12\n\
                    kmsd_pool_misses_total{spec=\"RSA_2048\"} 2\n\
                    kmsd_keygen_total{spec=\"EC_P256\"} 40\n# EOF\n";
        let pool = pool_counters(text);
        let ec = pool["EC_P256"];
        assert_eq!((ec.ready, ec.capacity, ec.hits, ec.misses), (3, 8, 12, 0));
        assert_eq!(pool["RSA_2048"].misses, 2);
    }

    #[test]
    fn addresses_are_read_from_the_json_log() {
        let log = r#"{"fields":{"message":"serving Prometheus metrics at /metrics","addr":"127.0.0.1:9"}}
{"fields":{"message":"kmsd listening","local_addr":"127.0.0.1:7"}}"#;
        assert_eq!(
            logged(log, "kmsd listening", "local_addr").as_deref(),
            Some("127.0.0.1:7")
        );
        assert_eq!(
            logged(log, "serving Prometheus metrics at /metrics", "addr").as_deref(),
            Some("127.0.0.1:9")
        );
    }
}
