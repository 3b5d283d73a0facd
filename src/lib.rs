#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! kmsd: a self-hosted Key Management Service over gRPC.
//!
//! # Map
//!
//! | module | owns |
//! |---|---|
//! | [`admin`] | offline subcommands: `kmsd rotate-root-key` |
//! | [`backup`] | online snapshots of the embedded store, for the Backup operation |
//! | [`config`] | the one [`config::Config`]: flags, `KMSD_*` env, TOML file, defaults, and the rules that combine them |
//! | [`server`] | wiring: builds the [`kms::Kms`] and serves it over gRPC; health, reflection, TLS, shutdown |
//! | [`kms`] | the core: built once from the config; the domain handles every operation uses |
//! | [`api`] | every operation as one handler (`impl Call for XRequest`), one file per family |
//! | [`pipeline`] | admission, the same for every transport: authenticate, audit, authorize, audit gate, throttle, handler, outcome |
//! | [`call`] | a call as the core sees it: [`call::Caller`] and its [`call::CallNote`] |
//! | [`transport`] | only what is tonic's or hyper's: [`transport::grpc`] (one layer, generated services), [`transport::https`] (the official SDKs' protocol), [`transport::limits`] |
//! | [`error`] | the domain error, its canonical status and public error code |
//! | [`auth`] | access control: principals, grants, identification and authorization |
//! | [`throttle`] | the per-instance limit on data key pair calls |
//! | [`audit`] | the audit log: one hash-chained JSON line per call, written by a dedicated thread to a file, stdout or syslog; `kmsd audit verify` |
//! | [`metrics`] | Prometheus metrics and `/metrics` |
//! | [`reload`] | live reload of the certificates, the client CA and the auth file: on change and on SIGHUP |
//! | [`logging`] | the binary's log subscriber: format, filter, colour only on a terminal |
//! | [`data_plane`] | the domain of the operations that use key material: key pairs, encryption, decryption, signatures and MACs, random and hashes |
//! | [`keys`] | the control plane's domain: keys, versions, aliases, rotation, deletion, client keys |
//! | [`secrets`] | secrets: named, versioned values sealed under a master key; their stages and lifecycle |
//! | [`keypool`] | the pool of pre-generated key pairs and its worker threads |
//! | [`crypto`] | pure functions and secret types: sealer (AES-GCM + HKDF), blobs, key generation, signing keys and HMAC |
//! | [`store`] | the durable [`store::KeyStore`] trait and its backends |
//! | [`trace_context`] | W3C `traceparent`: the caller's trace, kmsd's span, the answer's header |
//! | [`request_id`], [`clock`] | request IDs; injectable time |
//!
//! The messages, the operation catalogue ([`kmsd_api::ops`]) and the public error
//! codes ([`kmsd_api::ErrorCode`]) live in the `kmsd-api` crate, which kmsctl and the
//! bench share.
//!
//! # How a call flows
//!
//! A transport classifies a call once into a [`kmsd_api::ops::Route`] and reads what
//! the caller presented: a gRPC call's token or client certificate
//! ([`transport::grpc::admission`]), an HTTPS call's signature, then its body and
//! digest ([`transport::https::gateway`]). [`pipeline::run`] then takes every call
//! the same way: identify the caller ([`auth::identify`]), begin its audit record
//! ([`audit::AuditLog::begin`]), authorize the operation ([`auth::authorize`]), with
//! `--audit-required` put the request on disk ([`audit::AuditLog::record_start`]),
//! admit a key pair call ([`throttle::KeyPairThrottle::admit`]), run the handler, and
//! record the outcome in the audit log and [`metrics`]. The handler is the request's
//! [`api::Call`]: it calls [`data_plane`] or [`keys`] as the caller, which read and
//! write through [`store::KeyStore`], open material with [`crypto::sealer`] and take
//! key pairs from [`keypool::KeyPairPool`]. Errors travel as [`error::KmsError`] and
//! become a status or an `Error` body in one place per transport. Only [`transport`]
//! and [`server`] know tonic; `docs/architecture.md` has the picture and how to add an
//! operation.

pub mod admin;
pub mod api;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod call;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod data_plane;
pub mod error;
pub mod keypool;
pub mod keys;
pub mod kms;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod reload;
pub mod request_id;
pub mod secrets;
pub mod server;
pub mod store;
pub mod throttle;
pub mod trace_context;
pub mod transport;

#[cfg(test)]
mod layering;
