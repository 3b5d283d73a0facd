//! End-to-end tests of the per-instance throttle over real sockets, with the pool off
//! so every data key pair call generates (RSA_4096 takes long enough that a burst
//! really overlaps).

use std::time::{Duration, Instant};

use tonic::Code;
use tonic::transport::Channel;

use crate::support::pb::crypto_service_client::CryptoServiceClient;
use crate::support::pb::*;
use crate::support::*;

fn rsa4096(key_id: &str) -> GenerateDataKeyPairWithoutPlaintextRequest {
    GenerateDataKeyPairWithoutPlaintextRequest {
        key_id: key_id.to_owned(),
        key_pair_spec: "RSA_4096".into(),
        key_format: "DER".into(),
        ..Default::default()
    }
}

fn ec(key_id: &str) -> AdvanceGenerateDataKeyPairWithoutPlaintextRequest {
    AdvanceGenerateDataKeyPairWithoutPlaintextRequest {
        key_id: key_id.to_owned(),
        key_pair_spec: "EC_P256".into(),
        key_format: "DER".into(),
        aad: Vec::new(),
    }
}

/// Fires `count` RSA_4096 calls at once over the given clients; returns (successes,
/// rejections), checking every rejection's status, details and speed.
async fn burst(
    clients: Vec<CryptoServiceClient<Channel>>,
    key_id: &str,
    count: usize,
) -> (usize, usize) {
    let calls = (0..count).map(|i| {
        let mut client = clients[i % clients.len()].clone();
        let request = rsa4096(key_id);
        async move {
            let started = Instant::now();
            let result = client
                .generate_data_key_pair_without_plaintext(request)
                .await;
            (result, started.elapsed())
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let mut ok = 0;
    let mut rejected = 0;
    for (result, elapsed) in results {
        match result {
            Ok(_) => ok += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert_eq!(status.message(), "Concurrency Limit Exceeded.");
                assert_eq!(reason(&status), "Rejected.Throttling");
                let details = tonic_types::StatusExt::get_error_details(&status);
                assert!(details.retry_info().is_some(), "RetryInfo suggests a delay");
                assert!(
                    elapsed < Duration::from_secs(2),
                    "rejected at once, not queued: {elapsed:?}"
                );
                rejected += 1;
            }
        }
    }
    (ok, rejected)
}

async fn channel_to(server: &TestServer) -> Channel {
    Channel::from_shared(format!("http://{}", server.server.local_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_burst_from_one_channel_admits_exactly_one() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let (ok, rejected) = burst(vec![server.crypto()], &key_id, 8).await;
    assert_eq!((ok, rejected), (1, 7));
}

#[tokio::test]
async fn a_burst_from_many_channels_admits_exactly_one() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(CryptoServiceClient::new(channel_to(&server).await));
    }
    let (ok, rejected) = burst(clients, &key_id, 8).await;
    assert_eq!((ok, rejected), (1, 7));
}

#[tokio::test]
async fn keypair_concurrency_four_admits_four() {
    let server = start_with(|config| config.keypair_concurrency = 4).await;
    let key_id = create_key(&server).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(CryptoServiceClient::new(channel_to(&server).await));
    }
    let (ok, rejected) = burst(clients, &key_id, 10).await;
    assert_eq!((ok, rejected), (4, 6));
}

#[tokio::test]
async fn sequential_calls_are_never_rejected() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let mut crypto = server.crypto();
    for _ in 0..20 {
        crypto
            .advance_generate_data_key_pair_without_plaintext(ec(&key_id))
            .await
            .expect("sequential calls are admitted");
    }
}

#[tokio::test]
async fn a_call_whose_client_gave_up_does_not_block_the_next() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let mut crypto = server.crypto();
    let mut abandoned = tonic::Request::new(rsa4096(&key_id));
    abandoned.set_timeout(Duration::from_millis(30));
    let status = crypto
        .generate_data_key_pair_without_plaintext(abandoned)
        .await
        .expect_err("the client gives up after 30 ms");
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    // The next call is admitted at once, while the abandoned RSA_4096 generation may
    // still be running on the blocking pool.
    tokio::time::sleep(Duration::from_millis(20)).await;
    crypto
        .advance_generate_data_key_pair_without_plaintext(ec(&key_id))
        .await
        .expect("the permit came back when the client gave up");
}

#[tokio::test]
async fn other_rpcs_run_freely_while_a_key_pair_call_holds_the_permit() {
    let server = start().await;
    let key_id = create_key(&server).await;
    let sealed = server
        .crypto()
        .generate_data_key_pair(GenerateDataKeyPairRequest {
            key_id: key_id.clone(),
            key_pair_spec: "EC_P256".into(),
            key_format: "PEM".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let advance = server
        .crypto()
        .advance_generate_data_key_pair_without_plaintext(ec(&key_id))
        .await
        .unwrap()
        .into_inner();

    // Start the slow call alone, then check with one probe that it holds the permit
    // (the probe is rejected). Nothing else runs meanwhile, so it cannot be the one
    // holding it; if RSA_4096 happened to finish first, try again.
    let mut probe = server.crypto();
    let mut attempts = 0;
    let slow = loop {
        attempts += 1;
        assert!(attempts <= 5, "the slow call never held the permit");
        let mut slow_client = server.crypto();
        let slow_request = rsa4096(&key_id);
        let slow = tokio::spawn(async move {
            slow_client
                .generate_data_key_pair_without_plaintext(slow_request)
                .await
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        match probe
            .advance_generate_data_key_pair_without_plaintext(ec(&key_id))
            .await
        {
            Err(status) if status.code() == Code::ResourceExhausted => break slow,
            _ => {
                slow.await.unwrap().expect("the slow call succeeds");
            }
        }
    };

    let mut crypto = server.crypto();
    crypto
        .decrypt(DecryptRequest {
            ciphertext_blob: sealed.private_key_ciphertext_blob.clone(),
            key_id: key_id.clone(),
            iv: sealed.iv.clone(),
            ..Default::default()
        })
        .await
        .expect("Decrypt is not throttled");
    crypto
        .advance_decrypt(AdvanceDecryptRequest {
            ciphertext_blob: advance.private_key_ciphertext_blob.clone(),
            ..Default::default()
        })
        .await
        .expect("AdvanceDecrypt is not throttled");
    let mut kms = server.management();
    kms.describe_key(DescribeKeyRequest {
        key_id: key_id.clone(),
    })
    .await
    .expect("control plane");
    kms.create_key(CreateKeyRequest::default())
        .await
        .expect("control plane");
    kms.list_keys(ListKeysRequest::default())
        .await
        .expect("control plane");
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health");
    assert!(
        !slow.is_finished(),
        "the other calls finished while the RSA_4096 call was in flight"
    );
    slow.await.unwrap().expect("the slow call succeeds");
}
