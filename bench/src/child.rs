//! The server under test as a child process, and the line protocol that drives it.
//!
//! The bench re-executes itself as `kmsd-bench serve-child`: that process starts the
//! real server ([`kmsd::server::start`]) on 127.0.0.1:0 and nothing else, so its
//! resident size is the server's, and its CPU is not shared with the client's runtime.
//! It prints `listening ADDR`, then answers one line per command on stdin:
//!
//! | command | answer |
//! |---|---|
//! | `stats` | a JSON object: per spec `ready`, `capacity`, `hits`, `waits`, `misses`, `generated` |
//! | `wait-ready SPEC N` | `ok` once SPEC has N pairs ready (`timeout` after 120 s) |
//! | `wait-primed` / `wait-full` | `ok MS`: ms since start when every pooled spec had a pair / was full |
//! | `rss` | `VmRSS VmHWM` in KiB |
//! | `https` | the HTTPS gateway's address (its development certificate is in the data directory) |
//!
//! End of input shuts the server down.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kmsd::config::Config;
use kmsd::crypto::keygen::KeyPairSpec;
use tokio::net::TcpListener;

use crate::paths::{KeyPairPool, PoolConfig};

const WAIT_LIMIT: Duration = Duration::from_secs(120);

/// Runs the child side until stdin closes.
pub async fn serve_child(data_dir: PathBuf, root_key_file: PathBuf) -> Result<(), String> {
    let started = Instant::now();
    let config = Config {
        listen: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        data_dir,
        root_key_file: Some(root_key_file),
        pool: PoolConfig::default(),
        https_listen: Some("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?),
        ..Config::default()
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let server = kmsd::server::start(config, listener)
        .await
        .map_err(|e| format!("start: {e}"))?;
    let pool = server.pool().clone();
    let https = server
        .https_addr()
        .map_or_else(|| "error: no gateway".to_owned(), |a| a.to_string());
    println!("listening {}", server.local_addr());

    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        let answer = if line.trim() == "https" {
            https.clone()
        } else {
            answer(&pool, started, line.trim()).await
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{answer}");
        let _ = out.flush();
    }
    server
        .shutdown()
        .await
        .map_err(|e| format!("shutdown: {e}"))
}

async fn answer(pool: &KeyPairPool, started: Instant, command: &str) -> String {
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        ["stats"] => stats_json(pool),
        ["wait-ready", spec, n] => {
            let (Ok(spec), Ok(n)) = (spec.parse::<KeyPairSpec>(), n.parse::<usize>()) else {
                return "error: wait-ready SPEC N".into();
            };
            wait_until(|| pool.ready(spec) >= n).await
        }
        ["wait-primed"] => {
            if tokio::time::timeout(WAIT_LIMIT, pool.wait_primed())
                .await
                .is_err()
            {
                return "timeout".into();
            }
            format!("ok {:.1}", started.elapsed().as_secs_f64() * 1e3)
        }
        ["wait-full"] => {
            let full = || {
                KeyPairSpec::ALL
                    .into_iter()
                    .all(|s| pool.ready(s) >= pool.capacity(s))
            };
            match wait_until(full).await.as_str() {
                "ok" => format!("ok {:.1}", started.elapsed().as_secs_f64() * 1e3),
                other => other.to_owned(),
            }
        }
        ["rss"] => match rss_kib(Path::new("/proc/self/status")) {
            Some((rss, hwm)) => format!("{rss} {hwm}"),
            None => "error: no /proc/self/status".into(),
        },
        _ => format!("error: unknown command {command:?}"),
    }
}

/// Polls `cond` every 0.2 ms (the bench's own waits are never timed).
async fn wait_until(cond: impl Fn() -> bool) -> String {
    let deadline = Instant::now() + WAIT_LIMIT;
    while !cond() {
        if Instant::now() > deadline {
            return "timeout".into();
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    "ok".into()
}

fn stats_json(pool: &KeyPairPool) -> String {
    let map: serde_json::Map<String, serde_json::Value> = KeyPairSpec::ALL
        .into_iter()
        .map(|spec| {
            let s = pool.stats(spec);
            (
                spec.as_str().to_owned(),
                serde_json::json!({
                    "ready": s.ready, "capacity": s.capacity, "hits": s.hits,
                    "waits": s.waits, "misses": s.misses, "generated": s.generated,
                }),
            )
        })
        .collect();
    serde_json::Value::Object(map).to_string()
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

/// One pool counter snapshot of a spec, read from the child.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpecCounters {
    /// Configured depth.
    pub capacity: u64,
    /// Served from the queue.
    pub hits: u64,
    /// Waited for a worker.
    pub waits: u64,
    /// Generated on the request path.
    pub misses: u64,
}

/// The parent's handle on the child server.
pub struct ChildServer {
    child: Child,
    io: Arc<Mutex<(ChildStdin, BufReader<ChildStdout>)>>,
    /// Where it listens.
    pub addr: String,
    /// From spawn to `listening`, ms.
    pub listening_ms: f64,
    dir: PathBuf,
}

impl ChildServer {
    /// Spawns `exe serve-child` on a fresh data directory under the system temp dir.
    pub fn spawn(exe: &Path) -> Result<Self, String> {
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
        let key = kmsd::crypto::secret::MasterKeyMaterial::generate()
            .map_err(|e| format!("root key: {e}"))?;
        // Owner-only: kmsd refuses a root key file others may read.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(
            &mut options
                .open(&root_key)
                .map_err(|e| format!("root key: {e}"))?,
            key.expose_secret(),
        )
        .map_err(|e| format!("root key: {e}"))?;
        let spawned = Instant::now();
        let mut child = Command::new(exe)
            .arg("serve-child")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--root-key-file")
            .arg(&root_key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", exe.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("child without pipes".into());
        };
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .map_err(|e| format!("reading the child: {e}"))?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .ok_or_else(|| format!("the child server did not start: {line:?}"))?
            .to_owned();
        Ok(Self {
            child,
            io: Arc::new(Mutex::new((stdin, stdout))),
            addr,
            listening_ms: spawned.elapsed().as_secs_f64() * 1e3,
            dir,
        })
    }

    /// The HTTPS gateway's address and the development certificate it serves.
    pub async fn https(&self) -> Result<(String, PathBuf), String> {
        let addr = self.call("https".into()).await?;
        Ok((addr, self.dir.join("data").join("https-dev-cert.pem")))
    }

    /// The child's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command and returns its answer line (on a blocking thread).
    pub async fn call(&self, command: String) -> Result<String, String> {
        let io = Arc::clone(&self.io);
        tokio::task::spawn_blocking(move || {
            let mut io = io
                .lock()
                .map_err(|_| "control channel poisoned".to_owned())?;
            let (stdin, stdout) = &mut *io;
            writeln!(stdin, "{command}").map_err(|e| format!("to child: {e}"))?;
            stdin.flush().map_err(|e| format!("to child: {e}"))?;
            let mut line = String::new();
            stdout
                .read_line(&mut line)
                .map_err(|e| format!("from child: {e}"))?;
            match line.trim() {
                "" => Err(format!("the child server exited during {command:?}")),
                l if l.starts_with("error") || l == "timeout" => Err(format!("{command:?}: {l}")),
                l => Ok(l.to_owned()),
            }
        })
        .await
        .map_err(|e| format!("control task: {e}"))?
    }

    /// Waits until `spec` has `n` pairs ready.
    pub async fn wait_ready(&self, spec: KeyPairSpec, n: usize) -> Result<(), String> {
        self.call(format!("wait-ready {spec} {n}")).await.map(drop)
    }

    /// Waits for `wait-primed` or `wait-full`; returns ms since the server started.
    pub async fn wait_ms(&self, what: &str) -> Result<f64, String> {
        let answer = self.call(what.to_owned()).await?;
        answer
            .strip_prefix("ok ")
            .and_then(|ms| ms.parse().ok())
            .ok_or_else(|| format!("{what}: {answer:?}"))
    }

    /// The pool counters of `spec`.
    pub async fn counters(&self, spec: KeyPairSpec) -> Result<SpecCounters, String> {
        let answer = self.call("stats".into()).await?;
        let json: serde_json::Value =
            serde_json::from_str(&answer).map_err(|e| format!("stats: {e}"))?;
        let s = &json[spec.as_str()];
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        Ok(SpecCounters {
            capacity: n("capacity"),
            hits: n("hits"),
            waits: n("waits"),
            misses: n("misses"),
        })
    }

    /// Stops the child (closing its stdin) and removes its data directory.
    pub fn stop(mut self) {
        drop(self.io);
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

/// The pool the child runs, described for the report.
pub fn default_pool_description() -> String {
    let config = PoolConfig::default();
    let depths: Vec<String> = KeyPairSpec::ALL
        .into_iter()
        .map(|s| format!("{s} {}", config.depth(s)))
        .collect();
    format!("{} workers; depths {}", config.workers, depths.join(", "))
}
