//! The real `kmsd` binary as a child process, for tests of signals and durability.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `kmsd` process and the address it listens on.
pub struct KmsdProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// The HTTPS gateway's address, when `--https-listen` was given.
    pub https_addr: Option<SocketAddr>,
    /// The metrics endpoint's address, when `--metrics-listen` was given.
    pub metrics_addr: Option<SocketAddr>,
}

impl KmsdProcess {
    /// Starts `kmsd` on 127.0.0.1:0 with JSON logs and `extra` flags, and waits until
    /// it logs the address it listens on.
    pub fn spawn(data_dir: &Path, extra: &[&str]) -> Self {
        Self::spawn_with(data_dir, extra, Stdio::null(), &[])
    }

    /// [`Self::spawn`] with kmsd's stdout piped: `child.stdout` is the test's to read.
    pub fn spawn_piping_stdout(data_dir: &Path, extra: &[&str]) -> Self {
        Self::spawn_with(data_dir, extra, Stdio::piped(), &[])
    }

    /// [`Self::spawn`] with `env` added to the child's environment (e.g. the
    /// `SOFTHSM2_CONF` of a test's own HSM token).
    pub fn spawn_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &Path)]) -> Self {
        Self::spawn_with(data_dir, extra, Stdio::null(), env)
    }

    fn spawn_with(data_dir: &Path, extra: &[&str], stdout: Stdio, env: &[(&str, &Path)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kmsd"))
            .envs(env.iter().copied())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kmsd");
        let stderr = child.stderr.take().expect("stderr");
        // Read stderr to its end, so kmsd never blocks on a full pipe; the lines go
        // to `rx` until the address is known, and are dropped after that.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // The gateway (if any) logs its address before the gRPC listener does.
        let mut https_addr = None;
        let mut metrics_addr = None;
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("kmsd logs its address within 30 s");
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if json["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Prometheus"))
            {
                metrics_addr = json["fields"]["addr"].as_str().map(|a| a.parse().unwrap());
            }
            let message = json["fields"]["message"].as_str().unwrap_or_default();
            // Other lines name the address too (the plaintext warning off loopback).
            if let Some(addr) = json["fields"]["local_addr"].as_str()
                && message.ends_with("listening")
            {
                let addr = addr.parse().expect("a socket address");
                if message.contains("https gateway") {
                    https_addr = Some(addr);
                    continue;
                }
                break addr;
            }
        };
        Self {
            child,
            addr,
            https_addr,
            metrics_addr,
        }
    }

    /// Sends a signal by name (`KILL`, `TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit and returns its status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "kmsd did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }
}

impl Drop for KmsdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
