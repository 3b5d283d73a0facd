//! The end-to-end tests: one test binary, so a change to the crate relinks one
//! executable instead of one per file. Each module is one area; `support` is the shared
//! harness (a real server on 127.0.0.1:0, the `kmsd` binary as a child process, TLS and
//! token helpers).
//!
//! Everything here shares one process. Tests that need process-wide state of their own
//! (`security_logs` installs a global tracing subscriber) re-run themselves in a child
//! process of this binary; see `support::in_own_process`.

#![forbid(unsafe_code)]

mod support;

mod audit_log;
mod backup;
mod data_key_pairs;
mod fixtures;
mod fuzz_regressions;
mod gateway;
mod hardening;
mod hsm;
mod idempotency;
mod management;
mod migration_version;
mod operations;
mod page_tokens;
mod postgres;
mod pq_signing;
mod process;
mod reload;
mod root_key;
mod root_key_kms;
mod rsa_encryption;
mod secrets;
mod security;
mod security_logs;
mod seed;
mod serving_path;
mod signing;
mod symmetric;
mod throttle;
mod traces;
