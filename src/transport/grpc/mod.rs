//! The gRPC transport: one tower layer, the tonic services, and the status mapping.
//!
//! ```text
//! request ─▶ admission (crate::pipeline::run) ─▶ services ─▶ crate::api handler
//! ```
//!
//! - [`admission`]: the one layer: route, credentials, and the shared admission
//!   pipeline ([`crate::pipeline`]) with the tonic services as its handler.
//! - [`services`]: `kms.v1.CryptoService`, `kms.v1.KeyManagementService` and
//!   `kms.v1.SecretsService`, generated from the catalogue's list; [`admin`]: the operator's service (Backup,
//!   a server-streaming call).
//! - [`status`]: the one mapping of [`crate::error::KmsError`] to a status.
//! - [`tls`]: the TLS connections, each handshake with the settings current then.

pub mod admin;
pub mod admission;
pub mod coalesce;
pub mod services;
pub mod status;
pub mod tls;
