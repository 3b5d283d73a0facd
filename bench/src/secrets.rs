//! Section 4e: GetSecretValue over gRPC against the trivial RPC, on one connection, in
//! alternating rounds (the goal: at least 0.8 of the trivial rate). The secret
//! is read as the official clients read it: by name, its ACSCurrent version, which
//! kmsd serves from its secret cache after the first call.

use std::time::Instant;

use serde::Serialize;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::Budget;
use crate::report::{Target, above, median};
use kmsd_api::pb::crypto_service_client::CryptoServiceClient;
use kmsd_api::pb::secrets_service_client::SecretsServiceClient;
use kmsd_api::pb::{CreateSecretRequest, GetSecretValueRequest};

/// The goal: GetSecretValue at least this share of the trivial RPC's rate.
pub const SECRET_RATIO_MIN: f64 = 0.8;
/// The value read: 1 KiB of text, a typical credential document.
pub const SECRET_LEN: usize = 1024;

/// Section 4e's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SecretsFloor {
    /// The trivial RPC.
    pub trivial_rpc: String,
    /// Median over rounds, calls per second.
    pub trivial_per_s: f64,
    /// GetSecretValue of a 1 KiB text secret, median over rounds.
    pub get_secret_value_per_s: f64,
    /// Median over rounds of (GetSecretValue rate / trivial rate of the same round).
    pub ratio: f64,
}

impl SecretsFloor {
    /// The section's line of the table.
    pub fn lines(&self) -> String {
        format!(
            "{}: {:.0}/s; GetSecretValue 1 KiB: {:.0}/s, ratio {:.2}\n",
            self.trivial_rpc, self.trivial_per_s, self.get_secret_value_per_s, self.ratio
        )
    }

    /// The section's target.
    pub fn targets(&self) -> Vec<Target> {
        vec![above(
            "GetSecretValue / trivial RPC rate".into(),
            self.ratio,
            SECRET_RATIO_MIN,
        )]
    }
}

/// Creates the secret `name` holding [`SECRET_LEN`] bytes of text, the value the
/// GetSecretValue measurements read.
pub async fn create_secret(channel: &Channel, name: &str) -> Result<(), String> {
    SecretsServiceClient::new(channel.clone())
        .create_secret(CreateSecretRequest {
            secret_name: name.to_owned(),
            secret_data: "s".repeat(SECRET_LEN),
            ..Default::default()
        })
        .await
        .map(drop)
        .map_err(|s| format!("CreateSecret: {s:?}"))
}

/// Creates a secret, then alternates rounds of Health/Check and GetSecretValue.
pub async fn secrets_floor(channel: &Channel, budget: Budget) -> Result<SecretsFloor, String> {
    let name = format!("kmsd-bench/secret-{}", std::process::id());
    create_secret(channel, &name).await?;
    let mut health = HealthClient::new(channel.clone());
    let mut crypto = CryptoServiceClient::new(channel.clone());
    let round = budget.secs(0.75);
    let (mut trivial, mut reads, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..6 {
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < round {
            health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map_err(|s| format!("Health/Check: {s:?}"))?;
            n += 1;
        }
        let t = f64::from(n) / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < round {
            let value = crypto
                .get_secret_value(GetSecretValueRequest {
                    secret_name: name.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|s| format!("GetSecretValue: {s:?}"))?
                .into_inner();
            if value.secret_data.len() != SECRET_LEN {
                return Err("GetSecretValue answered another value".into());
            }
            n += 1;
        }
        let g = f64::from(n) / started.elapsed().as_secs_f64();
        trivial.push(t);
        reads.push(g);
        ratios.push(g / t);
    }
    Ok(SecretsFloor {
        trivial_rpc: "grpc.health.v1.Health/Check".into(),
        trivial_per_s: median(&trivial),
        get_secret_value_per_s: median(&reads),
        ratio: median(&ratios),
    })
}
