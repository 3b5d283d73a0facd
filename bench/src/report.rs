//! The report: what one run measured, its targets, and how it is printed (a table for
//! people, JSON for tools). Pure data and formatting, so it is unit-tested without a
//! server.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// The 1 ms p50 target of warm calls and of rejections' p99.
pub const WARM_P50_LIMIT_MS: f64 = 1.0;
/// Drained rate at least this share of the all-cores raw generation rate (RSA specs).
pub const DRAINED_RATIO_MIN: f64 = 0.9;
/// EC_P256 GenerateDataKeyPairWithoutPlaintext at least this share of the trivial RPC.
pub const FLOOR_RATIO_MIN: f64 = 0.7;
/// Encrypt of 4 KiB and GenerateDataKey of 32 bytes must reach this share of the
/// trivial RPC's rate (issue 14).
pub const SYMMETRIC_RATIO_MIN: f64 = 0.8;
/// Sign with an EC_P256 key must reach this share of the trivial RPC's rate (issue 15).
pub const SIGN_RATIO_MIN: f64 = 0.7;
/// Issue 28: the Sign handler of ML_DSA_65 and ED25519, in process, at most this many
/// times the library signing alone.
pub const SIGN_LIBRARY_RATIO_MAX: f64 = 1.3;
/// Section 4d: EC_P256 GenerateDataKeyPairWithoutPlaintext through the HTTPS gateway
/// against the same call over gRPC, at least this fraction of the gRPC rate.
pub const GATEWAY_RATIO_MIN: f64 = 0.7;
/// Rejections answered within this at p99.
pub const REJECT_P99_LIMIT_MS: f64 = 1.0;
/// "Do not slow admitted calls": admitted calls' p50 under fire at most this many times
/// the p50 of the same call while the other clients make trivial RPCs at the same pace.
/// Any 64 callers slow a 2-core machine that also runs them; what must not add to
/// that is the rejections.
pub const ADMITTED_SLOWDOWN_MAX: f64 = 1.5;
/// Idle resident memory with the default pool.
pub const IDLE_RSS_LIMIT_MIB: f64 = 64.0;
/// "No growth over 10,000 calls", allowing the allocator's own slack.
pub const GROWTH_LIMIT_MIB: f64 = 2.0;

/// Latency samples summarised.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Median (nearest rank), ms.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank), ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

impl Summary {
    /// Summarises `samples` (order does not matter). All zero when empty.
    pub fn of(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        Self {
            n: ms.len(),
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
            p50_ms: percentile(&ms, 50.0),
            p99_ms: percentile(&ms, 99.0),
            max_ms: ms[ms.len() - 1],
        }
    }

    /// Calls per second of back-to-back calls at this mean latency.
    pub fn per_second(&self) -> f64 {
        if self.mean_ms > 0.0 {
            1e3 / self.mean_ms
        } else {
            0.0
        }
    }
}

/// Nearest-rank percentile of sorted, non-empty `sorted`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `values` (mean of the middle two for an even count); 0 if empty.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

/// Where and how the run happened.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Meta {
    /// Unix seconds at the start.
    pub started_unix: u64,
    /// Wall time of the whole run, s.
    pub duration_s: f64,
    /// Cores the OS offers.
    pub cores: usize,
    /// 1-minute load average before and after the run (another process competing for
    /// the CPU shows here).
    pub load_before: f64,
    /// See `load_before`.
    pub load_after: f64,
    /// The server: `child process` (started by the bench) or the `--addr` given.
    pub server: String,
    /// Pool workers and per-spec depths of the server (when the bench started it).
    pub pool: String,
    /// The time scale the run used (`--scale`).
    pub scale: f64,
}

/// Server start-up, when the bench started the server.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Startup {
    /// From spawn to accepting connections, ms.
    pub listening_ms: f64,
    /// From spawn until every pooled spec had a pair (health SERVING), ms (polled
    /// from its metrics every millisecond).
    pub primed_ms: f64,
    /// From spawn until every queue was full, ms (polled likewise).
    pub full_ms: f64,
}

/// Raw key generation rate of one spec on this machine.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KeygenCeiling {
    /// e.g. `RSA_4096`.
    pub spec: String,
    /// Mean time of one generation on one thread, ms.
    pub single_ms: f64,
    /// Pairs per second on one thread.
    pub single_per_s: f64,
    /// Pairs per second on all cores (one thread per core).
    pub all_cores_per_s: f64,
    /// Threads used for `all_cores_per_s`.
    pub threads: usize,
    /// Generations timed (single thread + all cores).
    pub samples: usize,
}

/// Raw time of one in-process crypto step.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StepCost {
    /// What was timed.
    pub name: String,
    /// Mean time, microseconds.
    pub us: f64,
}

/// Section 1: the ceiling.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Ceiling {
    /// Per spec.
    pub keygen: Vec<KeygenCeiling>,
    /// Sealer, blob, material and encoding steps.
    pub steps: Vec<StepCost>,
}

/// Sequential calls of one operation and spec (section 2, and Decrypt rows).
#[derive(Clone, Debug, Default, Serialize)]
pub struct OpLatency {
    /// e.g. `RSA_4096`.
    pub spec: String,
    /// e.g. `GenerateDataKeyPairWithoutPlaintext`.
    pub operation: String,
    /// The latencies.
    pub latency: Summary,
    /// Back-to-back calls per second at the mean latency.
    pub calls_per_s: f64,
    /// Raw single-thread generation time / p50 (how much the pool saves).
    pub speedup_vs_raw: f64,
}

/// Section 3: sustained rate of one spec with its queue drained.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Drained {
    /// e.g. `RSA_4096`.
    pub spec: String,
    /// Calls timed (after the queue's ready pairs were used up).
    pub calls: usize,
    /// Over this long, s.
    pub seconds: f64,
    /// Calls per second.
    pub calls_per_s: f64,
    /// The all-cores raw generation rate, measured in rounds alternating with the
    /// drained ones (so not the same figure as section 1's).
    pub raw_all_cores_per_s: f64,
    /// `calls_per_s / raw_all_cores_per_s`.
    pub ratio: f64,
    /// Of the timed calls: served from the queue, after waiting for a worker, and
    /// generated on the request path (from the server's pool counters: hits and
    /// misses from its metrics, waits the calls that were neither).
    pub hits: u64,
    /// See `hits`.
    pub waits: u64,
    /// See `hits`.
    pub misses: u64,
    /// Whether the rate is bound by generation (RSA), so the ratio target applies. EC
    /// generation is faster than a call, so its queue refills between calls.
    pub generation_bound: bool,
}

/// Section 4: the floor of the serving path.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Floor {
    /// The trivial RPC.
    pub trivial_rpc: String,
    /// Median over rounds, calls per second.
    pub trivial_per_s: f64,
    /// EC_P256 GenerateDataKeyPairWithoutPlaintext, median over rounds.
    pub ec_p256_per_s: f64,
    /// `ec_p256_per_s / trivial_per_s`.
    pub ratio: f64,
    /// The ratio of each round (alternating, side by side), for the spread.
    pub round_ratios: Vec<f64>,
}

/// Section 4d: the HTTPS gateway of the official SDKs against gRPC, and what its
/// signature verification costs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GatewayFloor {
    /// EC_P256 GenerateDataKeyPairWithoutPlaintext over gRPC, median over rounds, /s.
    pub grpc_per_s: f64,
    /// The same call through the gateway (HTTP/1.1 keep-alive over TLS, signed), /s.
    pub https_per_s: f64,
    /// Median over rounds of (gateway rate / gRPC rate of the same round).
    pub ratio: f64,
    /// Each round's ratio.
    pub round_ratios: Vec<f64>,
    /// One RSA-2048 PKCS#1 v1.5 SHA-256 signature verification (what the gateway does
    /// per call), µs, median of batches.
    pub verify_us: f64,
    /// The verification's share of one gateway call's time at the measured rate.
    pub verify_share: f64,
    /// One RSA-2048 signature by the client (the SDK signs each request), µs.
    pub client_sign_us: f64,
}

impl GatewayFloor {
    /// The section's lines of the table.
    pub fn lines(&self) -> String {
        format!(
            "EC_P256 GenerateDataKeyPairWithoutPlaintext: gRPC {:.0}/s, HTTPS gateway {:.0}/s, \
             ratio {:.2} (rounds {})\nsignature verification {:.1} µs per call ({:.1}% of a \
             gateway call); the client's RSA-2048 signature {:.0} µs\n",
            self.grpc_per_s,
            self.https_per_s,
            self.ratio,
            self.round_ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" "),
            self.verify_us,
            self.verify_share * 100.0,
            self.client_sign_us,
        )
    }

    /// The target of this section.
    pub fn targets(&self) -> Vec<Target> {
        vec![above(
            "EC_P256 through the HTTPS gateway / gRPC rate".into(),
            self.ratio,
            GATEWAY_RATIO_MIN,
        )]
    }
}

/// Section 4b: the symmetric data plane against the same trivial RPC.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SymmetricFloor {
    /// The trivial RPC.
    pub trivial_rpc: String,
    /// Median over rounds, calls per second.
    pub trivial_per_s: f64,
    /// Encrypt of 4 KiB, median over rounds.
    pub encrypt_4k_per_s: f64,
    /// GenerateDataKey of 32 bytes, median over rounds.
    pub data_key_per_s: f64,
    /// Median over rounds of (Encrypt rate / trivial rate of the same round).
    pub encrypt_ratio: f64,
    /// Median over rounds of (GenerateDataKey rate / trivial rate of the same round).
    pub data_key_ratio: f64,
}

impl SymmetricFloor {
    /// The section's lines of the table.
    pub fn lines(&self) -> String {
        format!(
            "{}: {:.0}/s; Encrypt 4 KiB: {:.0}/s, ratio {:.2}; GenerateDataKey 32 B: {:.0}/s, ratio {:.2}\n",
            self.trivial_rpc,
            self.trivial_per_s,
            self.encrypt_4k_per_s,
            self.encrypt_ratio,
            self.data_key_per_s,
            self.data_key_ratio
        )
    }

    /// The two targets of this section.
    pub fn targets(&self) -> Vec<Target> {
        vec![
            above(
                "Encrypt 4 KiB / trivial RPC rate".into(),
                self.encrypt_ratio,
                SYMMETRIC_RATIO_MIN,
            ),
            above(
                "GenerateDataKey 32 B / trivial RPC rate".into(),
                self.data_key_ratio,
                SYMMETRIC_RATIO_MIN,
            ),
        ]
    }
}

/// Section 4c: Sign against the trivial RPC, and RSA Sign against raw ring signing.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SigningFloor {
    /// The trivial RPC.
    pub trivial_rpc: String,
    /// Median over rounds, calls per second.
    pub trivial_per_s: f64,
    /// Sign (EC_P256, ECDSA_SHA_256, RAW 256 B), median over rounds.
    pub sign_ec_p256_per_s: f64,
    /// Median over rounds of (Sign EC_P256 rate / trivial rate of the same round).
    pub ratio: f64,
    /// Each round's ratio.
    pub round_ratios: Vec<f64>,
    /// In the bench process, no RPC: the Sign handler EC_P256 (the whole call), us.
    pub in_process_sign_us: f64,
    /// In the bench process: ring's P-256 signing of the same message alone, us.
    pub ring_p256_sign_us: f64,
    /// RSA Sign over gRPC against ring signing the same message in-process.
    pub rsa: Vec<SignLatency>,
    /// ML_DSA_65 and ED25519 Sign against the trivial RPC and the library alone.
    pub post_quantum: Vec<SpecSign>,
}

/// One spec's Sign (RAW, 256 B) against the trivial RPC over gRPC and, in process,
/// against the library that signs alone (issue 28: ML_DSA_65 with aws-lc-rs, ED25519
/// with ring).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SpecSign {
    /// `ML_DSA_65` or `ED25519`.
    pub spec: String,
    /// The algorithm.
    pub algorithm: String,
    /// Sign over gRPC, median over rounds, calls per second.
    pub sign_per_s: f64,
    /// The trivial RPC in the same rounds, median, calls per second.
    pub trivial_per_s: f64,
    /// Median over rounds of (Sign rate / trivial rate).
    pub ratio: f64,
    /// In process, no RPC: the whole Sign handler, us.
    pub handler_us: f64,
    /// In process: the library signing the same message alone, us.
    pub library_us: f64,
    /// handler_us / library_us: the goal is at most [`SIGN_LIBRARY_RATIO_MAX`].
    pub library_ratio: f64,
}

/// One RSA spec's Sign latency beside raw ring signing, measured in alternating rounds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SignLatency {
    /// `RSA_2048` or `RSA_3072`.
    pub spec: String,
    /// The algorithm.
    pub algorithm: String,
    /// Sign over gRPC, sequential calls.
    pub rpc: Summary,
    /// `ring::signature::RsaKeyPair::sign` of the same message, one thread.
    pub raw: Summary,
    /// rpc p50 - raw p50, ms: what the server adds to the signature.
    pub overhead_ms: f64,
}

impl SigningFloor {
    /// The section's lines of the table.
    pub fn lines(&self) -> String {
        let mut out = format!(
            "{}: {:.0}/s; Sign EC_P256: {:.0}/s, ratio {:.2} (rounds {})\n",
            self.trivial_rpc,
            self.trivial_per_s,
            self.sign_ec_p256_per_s,
            self.ratio,
            self.round_ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let _ = writeln!(
            out,
            "in process: the Sign handler EC_P256 {:.1} us, of which ring's P-256 signing alone {:.1} us",
            self.in_process_sign_us, self.ring_p256_sign_us
        );
        for p in &self.post_quantum {
            let _ = writeln!(
                out,
                "Sign {} {}: {:.0}/s against the trivial RPC's {:.0}/s (ratio {:.2}); in process the handler {:.1} us, the library alone {:.1} us (x{:.2})",
                p.spec,
                p.algorithm,
                p.sign_per_s,
                p.trivial_per_s,
                p.ratio,
                p.handler_us,
                p.library_us,
                p.library_ratio
            );
        }
        for r in &self.rsa {
            let _ = writeln!(
                out,
                "Sign {} {}: p50 {:.3} ms, p99 {:.3} ms; raw ring p50 {:.3} ms, p99 {:.3} ms; server adds {:.3} ms",
                r.spec,
                r.algorithm,
                r.rpc.p50_ms,
                r.rpc.p99_ms,
                r.raw.p50_ms,
                r.raw.p99_ms,
                r.overhead_ms
            );
        }
        out
    }

    /// The target of this section.
    pub fn targets(&self) -> Vec<Target> {
        let mut targets = vec![above(
            "Sign EC_P256 / trivial RPC rate".into(),
            self.ratio,
            SIGN_RATIO_MIN,
        )];
        for p in &self.post_quantum {
            targets.push(at_most(
                format!("Sign {} handler / {} alone", p.spec, p.algorithm),
                p.library_ratio,
                SIGN_LIBRARY_RATIO_MAX,
            ));
        }
        targets
    }
}

/// Section 5: the throttle under fire.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Throttle {
    /// Concurrent clients, each on its own connection.
    pub clients: usize,
    /// The call they all make.
    pub call: String,
    /// Each client calls once per this many ms; 0: back to back (saturating).
    pub pace_ms: f64,
    /// For this long, s.
    pub seconds: f64,
    /// Rejections per second.
    pub rejected_per_s: f64,
    /// Time to a rejection.
    pub rejected: Summary,
    /// Admitted calls per second.
    pub admitted_per_s: f64,
    /// Latency of admitted calls under fire.
    pub admitted: Summary,
    /// The same call alone (section 2), for comparison.
    pub alone: Summary,
    /// `admitted.p50_ms / alone.p50_ms`.
    pub admitted_slowdown: f64,
    /// Server CPU time (user + system) per call, admitted or rejected, microseconds.
    pub server_cpu_us_per_call: f64,
    /// The control run: the same call by one client while the others call
    /// Health/Check at the same pace (so nothing is rejected).
    pub control_admitted: Summary,
    /// `admitted.p50_ms / control_admitted.p50_ms`.
    pub admitted_vs_control: f64,
    /// Other errors (should be 0).
    pub errors: usize,
}

/// Section 6: resident memory of the server process.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Memory {
    /// After start-up, queues full, MiB.
    pub idle_mib: f64,
    /// Before the counted calls (after the earlier sections warmed everything), MiB.
    pub before_mib: f64,
    /// Calls made between `before` and `after`.
    pub calls: usize,
    /// After them, MiB.
    pub after_mib: f64,
    /// `after - before`, MiB.
    pub growth_mib: f64,
    /// At the end of the run (after the throttle section), MiB.
    pub end_mib: f64,
    /// Peak resident size over the run (VmHWM), MiB.
    pub peak_mib: f64,
}

/// A target of the issue and whether this run met it.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// What is promised.
    pub name: String,
    /// The value measured.
    pub measured: f64,
    /// The bound.
    pub limit: f64,
    /// Whether `measured` is on the right side of `limit`.
    pub pass: bool,
}

/// Everything one run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Where and how.
    pub meta: Meta,
    /// Server start-up (absent with `--addr`).
    pub startup: Option<Startup>,
    /// Section 1.
    pub ceiling: Ceiling,
    /// Section 2: the four Generate operations per spec with the pool warm.
    pub warm: Vec<OpLatency>,
    /// Decrypt and AdvanceDecrypt of an RSA_4096 and an EC_P256 private key.
    pub decrypt: Vec<OpLatency>,
    /// Section 3.
    pub drained: Vec<Drained>,
    /// Section 4.
    pub floor: Floor,
    /// Section 4b (absent in reports made before it existed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symmetric: Option<SymmetricFloor>,
    /// Section 4c (absent in reports made before it existed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningFloor>,
    pub gateway: Option<GatewayFloor>,
    /// Section 4e (absent in reports made before it existed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets: Option<crate::secrets::SecretsFloor>,
    /// Section 4f (absent in reports made before it existed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rsa_decrypt: Option<crate::rsa_decrypt::RsaDecryptLatency>,
    /// Section 4g (absent in reports made before it existed, and with `--addr`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saturation: Option<crate::saturation::Saturation>,
    /// Section 5, paced clients (the targets are judged on this run).
    pub throttle: Throttle,
    /// Section 5, the same clients back to back, saturating the machine.
    pub throttle_saturated: Throttle,
    /// Section 6 (absent with `--addr` unless `--pid` is given).
    pub memory: Option<Memory>,
    /// The targets, evaluated.
    pub targets: Vec<Target>,
}

impl Report {
    /// Evaluates the targets from the measured sections (replacing any earlier list).
    pub fn evaluate(&mut self) {
        let mut targets = Vec::new();
        let mut specs: Vec<&str> = self.warm.iter().map(|w| w.spec.as_str()).collect();
        specs.dedup();
        for spec in specs {
            let worst = self
                .warm
                .iter()
                .filter(|w| w.spec == spec)
                .map(|w| w.latency.p50_ms)
                .fold(0.0, f64::max);
            targets.push(below(
                format!("{spec} warm p50 (worst of the four operations), ms"),
                worst,
                WARM_P50_LIMIT_MS,
            ));
        }
        for d in self.drained.iter().filter(|d| d.generation_bound) {
            targets.push(above(
                format!("{} drained rate / all-cores raw rate", d.spec),
                d.ratio,
                DRAINED_RATIO_MIN,
            ));
        }
        if self.floor.trivial_per_s > 0.0 {
            targets.push(above(
                "EC_P256 GenerateDataKeyPairWithoutPlaintext / trivial RPC rate".into(),
                self.floor.ratio,
                FLOOR_RATIO_MIN,
            ));
        }
        if let Some(symmetric) = self.symmetric.as_ref().filter(|s| s.trivial_per_s > 0.0) {
            targets.extend(symmetric.targets());
        }
        if let Some(signing) = self.signing.as_ref().filter(|s| s.trivial_per_s > 0.0) {
            targets.extend(signing.targets());
        }
        if let Some(gateway) = self.gateway.as_ref().filter(|g| g.grpc_per_s > 0.0) {
            targets.extend(gateway.targets());
        }
        if let Some(secrets) = self.secrets.as_ref().filter(|s| s.trivial_per_s > 0.0) {
            targets.extend(secrets.targets());
        }
        if let Some(rsa_decrypt) = self.rsa_decrypt.as_ref().filter(|r| r.raw.n > 0) {
            targets.extend(rsa_decrypt.targets());
        }
        if let Some(saturation) = self.saturation.as_ref().filter(|s| !s.calls.is_empty()) {
            targets.extend(saturation.targets());
        }
        if self.throttle.rejected.n > 0 {
            targets.push(below(
                "throttle rejection p99 (paced clients), ms".into(),
                self.throttle.rejected.p99_ms,
                REJECT_P99_LIMIT_MS,
            ));
        }
        if self.throttle.admitted.n > 0 && self.throttle.control_admitted.n > 0 {
            targets.push(below(
                "admitted p50 under fire / same load without rejections".into(),
                self.throttle.admitted_vs_control,
                ADMITTED_SLOWDOWN_MAX,
            ));
        }
        if let Some(m) = &self.memory {
            targets.push(below(
                "idle resident memory, MiB".into(),
                m.idle_mib,
                IDLE_RSS_LIMIT_MIB,
            ));
            targets.push(below(
                format!("resident growth over {} calls, MiB", m.calls),
                m.growth_mib,
                GROWTH_LIMIT_MIB,
            ));
        }
        self.targets = targets;
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.meta;
        let _ = writeln!(
            out,
            "kmsd-bench: {} cores, load {:.2} -> {:.2}, {:.0} s, scale {}, server: {}",
            m.cores, m.load_before, m.load_after, m.duration_s, m.scale, m.server
        );
        if !m.pool.is_empty() {
            let _ = writeln!(out, "pool: {}", m.pool);
        }
        if let Some(s) = &self.startup {
            let _ = writeln!(
                out,
                "start-up: listening {:.0} ms, primed {:.0} ms, pool full {:.0} ms",
                s.listening_ms, s.primed_ms, s.full_ms
            );
        }

        let _ = writeln!(out, "\n1. ceiling: raw key generation on this machine");
        let _ = writeln!(
            out,
            "{:<10} {:>12} {:>12} {:>16} {:>8}",
            "spec", "1 thread ms", "1 thread /s", "all cores /s", "samples"
        );
        for k in &self.ceiling.keygen {
            let _ = writeln!(
                out,
                "{:<10} {:>12.3} {:>12.1} {:>16.1} {:>8}",
                k.spec, k.single_ms, k.single_per_s, k.all_cores_per_s, k.samples
            );
        }
        for s in &self.ceiling.steps {
            let _ = writeln!(out, "  {:<52} {:>9.2} us", s.name, s.us);
        }

        let _ = writeln!(out, "\n2. sequential calls, pool warm");
        let _ = writeln!(
            out,
            "{:<10} {:<44} {:>8} {:>8} {:>8} {:>9} {:>9}",
            "spec", "operation", "p50 ms", "p99 ms", "n", "calls/s", "x raw"
        );
        for w in self.warm.iter().chain(&self.decrypt) {
            let _ = writeln!(
                out,
                "{:<10} {:<44} {:>8.3} {:>8.3} {:>8} {:>9.0} {:>9}",
                w.spec,
                w.operation,
                w.latency.p50_ms,
                w.latency.p99_ms,
                w.latency.n,
                w.calls_per_s,
                if w.speedup_vs_raw > 0.0 {
                    format!("{:.0}", w.speedup_vs_raw)
                } else {
                    "-".into()
                }
            );
        }

        let _ = writeln!(
            out,
            "\n3. sustained rate, pool drained (limit 1, sequential)"
        );
        let _ = writeln!(
            out,
            "{:<10} {:>7} {:>8} {:>9} {:>13} {:>7} {:>18}",
            "spec", "calls", "s", "calls/s", "raw all /s", "ratio", "hit/wait/miss"
        );
        for d in &self.drained {
            let _ = writeln!(
                out,
                "{:<10} {:>7} {:>8.1} {:>9.2} {:>13.2} {:>7.2} {:>18}{}",
                d.spec,
                d.calls,
                d.seconds,
                d.calls_per_s,
                d.raw_all_cores_per_s,
                d.ratio,
                format!("{}/{}/{}", d.hits, d.waits, d.misses),
                if d.generation_bound {
                    ""
                } else {
                    "  (RPC-bound)"
                }
            );
        }

        let f = &self.floor;
        let _ = writeln!(out, "\n4. floor of the serving path");
        let _ = writeln!(
            out,
            "{}: {:.0}/s; EC_P256 GenerateDataKeyPairWithoutPlaintext: {:.0}/s; ratio {:.2} (rounds {})",
            f.trivial_rpc,
            f.trivial_per_s,
            f.ec_p256_per_s,
            f.ratio,
            f.round_ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        if let Some(symmetric) = &self.symmetric {
            let _ = writeln!(out, "\n4b. symmetric data plane against the trivial RPC");
            out.push_str(&symmetric.lines());
        }
        if let Some(signing) = &self.signing {
            let _ = writeln!(
                out,
                "\n4c. Sign against the trivial RPC; RSA Sign against raw ring signing"
            );
            out.push_str(&signing.lines());
        }
        if let Some(gateway) = &self.gateway {
            let _ = writeln!(out, "\n4d. the HTTPS gateway against gRPC");
            out.push_str(&gateway.lines());
        }
        if let Some(secrets) = &self.secrets {
            let _ = writeln!(out, "\n4e. GetSecretValue against the trivial RPC");
            out.push_str(&secrets.lines());
        }
        if let Some(rsa_decrypt) = &self.rsa_decrypt {
            let _ = writeln!(out, "\n4f. RSA_2048 OAEP Decrypt against aws-lc-rs alone");
            out.push_str(&rsa_decrypt.lines());
        }
        if let Some(saturation) = &self.saturation {
            let _ = writeln!(out, "\n4g. the serving path at saturation");
            out.push_str(&saturation.lines());
        }

        let _ = writeln!(out, "\n5. throttle under fire");
        for t in [&self.throttle, &self.throttle_saturated] {
            let _ = writeln!(
                out,
                "{} clients, {} for {:.1} s, {}",
                t.clients,
                t.call,
                t.seconds,
                if t.pace_ms > 0.0 {
                    format!("each once per {} ms", t.pace_ms)
                } else {
                    "back to back (saturating)".into()
                }
            );
            let _ = writeln!(
                out,
                "  rejected {:.0}/s, p50 {:.3} ms, p99 {:.3} ms; admitted {:.0}/s, p50 {:.3} ms, p99 {:.3} ms (alone p50 {:.3} ms, x{:.2}); server CPU {:.1} us/call; other errors {}",
                t.rejected_per_s,
                t.rejected.p50_ms,
                t.rejected.p99_ms,
                t.admitted_per_s,
                t.admitted.p50_ms,
                t.admitted.p99_ms,
                t.alone.p50_ms,
                t.admitted_slowdown,
                t.server_cpu_us_per_call,
                t.errors
            );
            if t.control_admitted.n > 0 {
                let _ = writeln!(
                    out,
                    "  control (others call Health/Check at the same pace): p50 {:.3} ms, p99 {:.3} ms; admitted under fire x{:.2} of it",
                    t.control_admitted.p50_ms, t.control_admitted.p99_ms, t.admitted_vs_control
                );
            }
        }

        let _ = writeln!(out, "\n6. memory (server resident set)");
        match &self.memory {
            Some(m) => {
                let _ = writeln!(
                    out,
                    "idle {:.1} MiB; {} calls: {:.1} -> {:.1} MiB ({:+.2}); end {:.1} MiB; peak {:.1} MiB",
                    m.idle_mib,
                    m.calls,
                    m.before_mib,
                    m.after_mib,
                    m.growth_mib,
                    m.end_mib,
                    m.peak_mib
                );
            }
            None => {
                let _ = writeln!(out, "not measured (give --pid with --addr)");
            }
        }

        let _ = writeln!(out, "\ntargets");
        for t in &self.targets {
            let _ = writeln!(
                out,
                "  [{}] {:<62} {:>10.3} (limit {})",
                if t.pass { "pass" } else { "MISS" },
                t.name,
                t.measured,
                t.limit
            );
        }
        out
    }
}

fn below(name: String, measured: f64, limit: f64) -> Target {
    Target {
        name,
        measured,
        limit,
        pass: measured < limit,
    }
}

pub(crate) fn at_most(name: String, measured: f64, limit: f64) -> Target {
    Target {
        name,
        measured,
        limit,
        pass: measured <= limit,
    }
}

pub(crate) fn above(name: String, measured: f64, limit: f64) -> Target {
    Target {
        name,
        measured,
        limit,
        pass: measured >= limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_micros(m * 1000)).collect()
    }

    #[test]
    fn summary_uses_nearest_rank() {
        let s = Summary::of(&ms(&(1..=100).rev().collect::<Vec<_>>()));
        assert_eq!(s.n, 100);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
        assert!((s.per_second() - 1e3 / 50.5).abs() < 1e-9);
        let one = Summary::of(&ms(&[7]));
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
        assert_eq!(Summary::of(&[]), Summary::default());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    fn sample_report() -> Report {
        let warm = |spec: &str, op: &str, p50: u64| OpLatency {
            spec: spec.into(),
            operation: op.into(),
            latency: Summary::of(&ms(&[p50, p50, p50 * 2])),
            calls_per_s: 1.0,
            speedup_vs_raw: 500.0,
        };
        let mut report = Report {
            warm: vec![
                warm("RSA_4096", "GenerateDataKeyPair", 0),
                warm("RSA_4096", "AdvanceGenerateDataKeyPair", 3),
                warm("EC_P256", "GenerateDataKeyPair", 0),
            ],
            drained: vec![
                Drained {
                    spec: "RSA_4096".into(),
                    ratio: 0.95,
                    generation_bound: true,
                    ..Default::default()
                },
                Drained {
                    spec: "EC_P256".into(),
                    ratio: 0.01,
                    generation_bound: false,
                    ..Default::default()
                },
            ],
            floor: Floor {
                trivial_rpc: "grpc.health.v1.Health/Check".into(),
                trivial_per_s: 1000.0,
                ec_p256_per_s: 650.0,
                ratio: 0.65,
                round_ratios: vec![0.6, 0.7],
            },
            symmetric: Some(SymmetricFloor {
                trivial_rpc: "grpc.health.v1.Health/Check".into(),
                trivial_per_s: 1000.0,
                encrypt_4k_per_s: 900.0,
                data_key_per_s: 700.0,
                encrypt_ratio: 0.9,
                data_key_ratio: 0.7,
            }),
            signing: Some(SigningFloor {
                trivial_rpc: "grpc.health.v1.Health/Check".into(),
                trivial_per_s: 1000.0,
                sign_ec_p256_per_s: 800.0,
                ratio: 0.8,
                round_ratios: vec![0.8],
                in_process_sign_us: 30.0,
                ring_p256_sign_us: 20.0,
                rsa: vec![SignLatency {
                    spec: "RSA_2048".into(),
                    algorithm: "RSA_PSS_SHA_256".into(),
                    rpc: Summary::of(&ms(&[2, 2])),
                    raw: Summary::of(&ms(&[1, 1])),
                    overhead_ms: 1.0,
                }],
                post_quantum: vec![SpecSign {
                    spec: "ML_DSA_65".into(),
                    algorithm: "ML_DSA".into(),
                    sign_per_s: 500.0,
                    trivial_per_s: 1000.0,
                    ratio: 0.5,
                    handler_us: 120.0,
                    library_us: 100.0,
                    library_ratio: 1.2,
                }],
            }),
            gateway: Some(GatewayFloor {
                grpc_per_s: 1000.0,
                https_per_s: 800.0,
                ratio: 0.8,
                round_ratios: vec![0.8],
                verify_us: 30.0,
                verify_share: 0.024,
                client_sign_us: 900.0,
            }),
            secrets: None,
            rsa_decrypt: None,
            saturation: Some(crate::saturation::Saturation {
                connections: 4,
                streams: 4,
                round_secs: 1.0,
                calls: vec![crate::saturation::CallRate {
                    call: "DescribeKey".into(),
                    per_s: 9000.0,
                    server_cpu_us: 40.0,
                    ratio: 0.75,
                    round_ratios: vec![0.75],
                }],
            }),
            throttle: Throttle {
                clients: 64,
                rejected: Summary::of(&ms(&[0, 0, 0])),
                admitted: Summary::of(&ms(&[2, 2])),
                alone: Summary::of(&ms(&[1, 1])),
                admitted_slowdown: 2.0,
                control_admitted: Summary::of(&ms(&[1, 1])),
                admitted_vs_control: 2.0,
                ..Default::default()
            },
            memory: Some(Memory {
                idle_mib: 20.0,
                calls: 10_000,
                growth_mib: 0.5,
                ..Default::default()
            }),
            ..Default::default()
        };
        report.evaluate();
        report
    }

    #[test]
    fn targets_are_judged_per_spec_and_skip_rpc_bound_drains() {
        let report = sample_report();
        let verdict = |prefix: &str| {
            report
                .targets
                .iter()
                .find(|t| t.name.starts_with(prefix))
                .unwrap_or_else(|| panic!("no target {prefix}"))
                .pass
        };
        // RSA_4096's worst operation (3 ms) fails; EC_P256 passes.
        assert!(!verdict("RSA_4096 warm"));
        assert!(verdict("EC_P256 warm"));
        assert!(verdict("RSA_4096 drained"));
        assert!(
            !report
                .targets
                .iter()
                .any(|t| t.name.starts_with("EC_P256 drained")),
            "an RPC-bound drain is not held to the generation ratio"
        );
        assert!(!verdict(
            "EC_P256 GenerateDataKeyPairWithoutPlaintext / trivial"
        ));
        assert!(verdict("throttle rejection p99"));
        assert!(!verdict("admitted p50"), "twice the control misses");
        assert!(verdict("idle resident"));
        assert!(verdict("resident growth"));
        assert!(verdict("Encrypt 4 KiB"));
        assert!(!verdict("GenerateDataKey 32 B"), "0.7 is below 0.8");
        assert!(verdict("Sign EC_P256"));
        assert!(
            verdict("EC_P256 through the HTTPS gateway"),
            "0.8 is above 0.7"
        );
        assert!(
            verdict("Sign ML_DSA_65 handler / ML_DSA alone"),
            "1.2 is at most 1.3"
        );
        // Section 4g: judged per call; a call without a row is a miss (ratio 0).
        assert!(verdict("saturated: DescribeKey"), "0.75 is at least 0.7");
        assert!(!verdict("saturated: EC_P256 key pair"), "no row");
        assert_eq!(report.targets.len(), 17);
    }

    #[test]
    fn table_and_json_carry_every_section() {
        let report = sample_report();
        let table = report.table();
        for needle in [
            "1. ceiling",
            "2. sequential calls",
            "3. sustained rate",
            "4. floor",
            "5. throttle",
            "6. memory",
            "[MISS] RSA_4096 warm p50",
            "[pass] EC_P256 warm p50",
            "(RPC-bound)",
            "grpc.health.v1.Health/Check",
            "4b. symmetric data plane",
            "[pass] Encrypt 4 KiB / trivial RPC rate",
            "[MISS] GenerateDataKey 32 B / trivial RPC rate",
            "4c. Sign against the trivial RPC",
            "Sign RSA_2048 RSA_PSS_SHA_256",
            "[pass] Sign EC_P256 / trivial RPC rate",
            "4d. the HTTPS gateway against gRPC",
            "[pass] EC_P256 through the HTTPS gateway / gRPC rate",
            "4g. the serving path at saturation",
            "[pass] saturated: DescribeKey / Health/Check",
            "[MISS] saturated: kmsd Health/Check / minimal tonic server",
        ] {
            assert!(table.contains(needle), "table lacks {needle:?}:\n{table}");
        }
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        for key in [
            "meta",
            "startup",
            "ceiling",
            "warm",
            "decrypt",
            "drained",
            "floor",
            "symmetric",
            "signing",
            "gateway",
            "saturation",
            "throttle",
            "throttle_saturated",
            "memory",
            "targets",
        ] {
            assert!(json.get(key).is_some(), "JSON lacks {key}");
        }
        assert_eq!(json["warm"][1]["latency"]["p50_ms"], 3.0);
        assert_eq!(json["targets"][0]["pass"], false);
        let no_memory = Report {
            memory: None,
            ..report
        };
        assert!(no_memory.table().contains("not measured"));
    }
}
