//! The root key wrapped by another kmsd's key (`--root-key-kms`), with real processes:
//! a kmsd B, the custodian, serving the SDKs' HTTPS gateway under an auth file that
//! lets A's client key use one AES key (by its alias) for AdvanceEncrypt and
//! AdvanceDecrypt only; and a kmsd A whose root key file only B opens.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::pb::crypto_service_client::CryptoServiceClient;
use crate::support::pb::key_management_service_client::KeyManagementServiceClient;
use crate::support::pb::{
    CreateAliasRequest, CreateClientKeyRequest, CreateKeyRequest, DecryptRequest,
    DeleteClientKeyRequest, GenerateDataKeyPairRequest,
};
use crate::support::process::KmsdProcess;
use crate::support::security::{TestCa, token_hash, with_token, write};
use crate::support::*;

const ADMIN_TOKEN: &str = "admin-token-of-the-custodian";
/// The client key's password: distinctive, so a test can tell it never appears.
const PASSWORD: &str = "pw-kmsd-a-7719-custody";
const ALIAS: &str = "alias/kmsd-a-root";

/// kmsd B: the custodian of A's root key.
struct Custodian {
    data: PathBuf,
    auth: PathBuf,
    process: Option<KmsdProcess>,
    https_port: u16,
}

impl Custodian {
    /// B with its auth file: `admin` may do everything, `kmsd-a` only AdvanceEncrypt
    /// and AdvanceDecrypt with the key [`ALIAS`] names.
    fn start(dir: &Path) -> Self {
        let auth = write(
            dir,
            "b-auth.toml",
            &format!(
                "[[principals]]\nname = \"admin\"\ntoken_sha256 = \"{}\"\noperations = [\"*\"]\n\
                 keys = [\"*\"]\n\n[[principals]]\nname = \"kmsd-a\"\ntoken_sha256 = \"{}\"\n\
                 operations = [\"AdvanceEncrypt\", \"AdvanceDecrypt\"]\nkeys = [\"{ALIAS}\"]\n",
                token_hash(ADMIN_TOKEN),
                token_hash("kmsd-a-token-unused")
            ),
        );
        let mut custodian = Self {
            data: dir.join("b-data"),
            auth,
            process: None,
            https_port: 0,
        };
        custodian.spawn();
        custodian
    }

    /// Starts B, on its first gateway port after the first start.
    fn spawn(&mut self) {
        let auth = self.auth.display().to_string();
        let https = format!("127.0.0.1:{}", self.https_port);
        let process = KmsdProcess::spawn(
            &self.data,
            &[
                "--pool-depth",
                "0",
                "--shutdown-grace-secs",
                "2",
                "--auth-config",
                &auth,
                "--https-listen",
                &https,
            ],
        );
        self.https_port = process.https_addr.expect("B serves the gateway").port();
        self.process = Some(process);
    }

    fn stop(&mut self) {
        stop(self.process.take().expect("B runs"));
    }

    /// The development certificate B's gateway serves: the CA file A trusts.
    fn ca(&self) -> PathBuf {
        self.data.join("https-dev-cert.pem")
    }

    async fn management(&self) -> KeyManagementServiceClient<tonic::transport::Channel> {
        KeyManagementServiceClient::new(self.process.as_ref().expect("B runs").channel().await)
    }

    /// An AES key for A's root key, named by [`ALIAS`]; and one A may not use.
    async fn make_keys(&self) -> String {
        let mut management = self.management().await;
        let mut create = async || {
            management
                .create_key(with_token(CreateKeyRequest::default(), ADMIN_TOKEN))
                .await
                .unwrap()
                .into_inner()
                .key_metadata
                .unwrap()
                .key_id
        };
        let key_id = create().await;
        let other = create().await;
        self.management()
            .await
            .create_alias(with_token(
                CreateAliasRequest {
                    key_id,
                    alias_name: ALIAS.into(),
                },
                ADMIN_TOKEN,
            ))
            .await
            .unwrap();
        other
    }

    /// A client key of principal `kmsd-a`, saved as the SDKs save one (JSON with
    /// `KeyId` and `PrivateKeyData`) with its password file: (ID, key file, password
    /// file).
    async fn mint(&self, dir: &Path, name: &str) -> (String, PathBuf, PathBuf) {
        let created = self
            .management()
            .await
            .create_client_key(with_token(
                CreateClientKeyRequest {
                    principal: "kmsd-a".into(),
                    password: PASSWORD.into(),
                    ..Default::default()
                },
                ADMIN_TOKEN,
            ))
            .await
            .unwrap()
            .into_inner();
        let json = serde_json::json!({
            "KeyId": created.client_key_id,
            "PrivateKeyData": created.private_key_data,
        });
        let key_file = dir.join(format!("{name}.json"));
        write_root_key(&key_file, json.to_string().as_bytes());
        let password_file = dir.join(format!("{name}.password"));
        write_root_key(&password_file, format!("{PASSWORD}\n").as_bytes());
        (created.client_key_id.clone(), key_file, password_file)
    }

    async fn revoke(&self, client_key_id: &str) {
        self.management()
            .await
            .delete_client_key(with_token(
                DeleteClientKeyRequest {
                    client_key_id: client_key_id.into(),
                },
                ADMIN_TOKEN,
            ))
            .await
            .unwrap();
    }

    /// The `--root-key-kms` value naming B's key with these files.
    fn endpoint(&self, key_id: &str, key_file: &Path, password_file: &Path, ca: &Path) -> String {
        format!(
            "https://127.0.0.1:{}?key-id={key_id}&client-key-file={}&password-file={}&ca-file={}",
            self.https_port,
            key_file.display(),
            password_file.display(),
            ca.display()
        )
    }
}

/// kmsd A with its root key in `wrapped`, opened by `endpoint`'s key.
fn spawn_a(data: &Path, wrapped: &Path, endpoint: &str) -> KmsdProcess {
    let wrapped = wrapped.display().to_string();
    KmsdProcess::spawn(
        data,
        &[
            "--pool-depth",
            "0",
            "--shutdown-grace-secs",
            "2",
            "--root-key-file",
            &wrapped,
            "--root-key-kms",
            endpoint,
        ],
    )
}

/// Runs a start of A that must fail: its stderr, which never shows the password.
fn failed_start(data: &Path, wrapped: &Path, endpoint: &str) -> String {
    let (ok, _, stderr) = run_kmsd(&[
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--pool-depth".as_ref(),
        "0".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--root-key-file".as_ref(),
        wrapped.as_os_str(),
        "--root-key-kms".as_ref(),
        endpoint.as_ref(),
    ]);
    assert!(!ok, "the start must fail: {stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    stderr
}

/// `kmsd root-key init-kms ENDPOINT --root-key-file FILE [--from-file FROM]`.
fn init(endpoint: &str, file: &Path, from: Option<&Path>) -> (bool, String, String) {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "root-key".as_ref(),
        "init-kms".as_ref(),
        endpoint.as_ref(),
        "--root-key-file".as_ref(),
        file.as_os_str(),
    ];
    if let Some(from) = from {
        args.extend(["--from-file".as_ref(), from.as_os_str()]);
    }
    run_kmsd(&args)
}

fn stop(mut kmsd: KmsdProcess) {
    kmsd.signal("TERM");
    assert!(kmsd.wait_exit(Duration::from_secs(20)).success());
}

/// A key made on `kmsd` and a private key sealed under it: the request that opens it
/// and what it must open to.
async fn seal_a_private_key(kmsd: &KmsdProcess) -> (DecryptRequest, Vec<u8>) {
    let key_id = KeyManagementServiceClient::new(kmsd.channel().await)
        .create_key(CreateKeyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap()
        .key_id;
    let pair = CryptoServiceClient::new(kmsd.channel().await)
        .generate_data_key_pair(GenerateDataKeyPairRequest {
            key_id: key_id.clone(),
            key_pair_spec: "EC_P256".into(),
            key_format: "PEM".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let request = DecryptRequest {
        ciphertext_blob: pair.private_key_ciphertext_blob.clone(),
        key_id,
        iv: pair.iv.clone(),
        ..Default::default()
    };
    (request, pair.private_key_plaintext.clone())
}

async fn assert_opens(kmsd: &KmsdProcess, request: &DecryptRequest, plaintext: &[u8]) {
    let opened = CryptoServiceClient::new(kmsd.channel().await)
        .decrypt(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(opened.plaintext == plaintext, "the private key opens");
}

/// A's health over gRPC, on a new connection; `None` while it does not answer.
async fn health(kmsd: &KmsdProcess) -> Option<ServingStatus> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", kmsd.addr))
        .unwrap()
        .connect()
        .await
        .ok()?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .ok()?;
    ServingStatus::try_from(answer.into_inner().status).ok()
}

#[tokio::test]
async fn a_kmsd_unsealed_by_another_waits_for_it_and_names_every_misstep() {
    let dir = temp_dir();
    let tmp = dir.path();
    let mut b = Custodian::start(tmp);
    let forbidden_key = b.make_keys().await;
    let (client_key_id, key_file, password_file) = b.mint(tmp, "a-client-key").await;
    let endpoint = b.endpoint(ALIAS, &key_file, &password_file, &b.ca());
    let wrapped = tmp.join("a-root.wrapped");
    let data = tmp.join("a-data");

    // A key the client key may not use: refused, naming the access policy.
    let (ok, _, stderr) = init(
        &b.endpoint(&forbidden_key, &key_file, &password_file, &b.ca()),
        &wrapped,
        None,
    );
    assert!(
        !ok && stderr.contains("refused AdvanceEncrypt") && stderr.contains("access policy"),
        "{stderr}"
    );
    assert!(!wrapped.exists());
    let (ok, stdout, stderr) = init(&endpoint, &wrapped, None);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("--root-key-kms"), "{stdout}");
    // The file holds B's blob: no 32-byte key, no password.
    let contents = std::fs::read_to_string(&wrapped).unwrap();
    assert!(contents.contains("\"custody\": \"kms\""), "{contents}");
    assert!(!contents.contains(PASSWORD));
    let (ok, _, stderr) = init(&endpoint, &wrapped, None);
    assert!(!ok && stderr.contains("exists already"), "{stderr}");

    // Start, keys made and used; restart, and what was sealed opens.
    let a = spawn_a(&data, &wrapped, &endpoint);
    let (request, plaintext) = seal_a_private_key(&a).await;
    assert_opens(&a, &request, &plaintext).await;
    stop(a);
    let a = spawn_a(&data, &wrapped, &endpoint);
    assert_opens(&a, &request, &plaintext).await;
    stop(a);

    // B down at A's start: A listens, NOT_SERVING, and serves once B is back.
    b.stop();
    let a = spawn_a(&data, &wrapped, &endpoint);
    assert_eq!(health(&a).await, Some(ServingStatus::NotServing));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(health(&a).await, Some(ServingStatus::NotServing));
    b.spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while health(&a).await != Some(ServingStatus::Serving) {
        assert!(
            Instant::now() < deadline,
            "A serves within 60 s of B's return"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_opens(&a, &request, &plaintext).await;
    stop(a);

    // A wrong password, a wrong CA, a revoked client key: each named, A exits.
    let wrong_password = tmp.join("wrong.password");
    write_root_key(&wrong_password, b"not-the-password\n");
    let stderr = failed_start(
        &data,
        &wrapped,
        &b.endpoint(ALIAS, &key_file, &wrong_password, &b.ca()),
    );
    assert!(
        stderr.contains("does not open with the password in")
            && stderr.contains(&wrong_password.display().to_string())
            && !stderr.contains("not-the-password"),
        "{stderr}"
    );
    let other_ca = write(tmp, "other-ca.pem", &TestCa::new("not B's").cert_pem());
    let stderr = failed_start(
        &data,
        &wrapped,
        &b.endpoint(ALIAS, &key_file, &password_file, &other_ca),
    );
    assert!(
        stderr.contains("TLS with the KMS at 127.0.0.1:")
            && stderr.contains(&format!("ca-file={}", other_ca.display())),
        "{stderr}"
    );
    b.revoke(&client_key_id).await;
    let stderr = failed_start(&data, &wrapped, &endpoint);
    assert!(
        stderr.contains(&format!("rejected the client key {client_key_id}"))
            && stderr.contains(&key_file.display().to_string()),
        "{stderr}"
    );

    // A new client key opens it all again.
    let (_, new_key_file, new_password_file) = b.mint(tmp, "a-client-key-2").await;
    let a = spawn_a(
        &data,
        &wrapped,
        &b.endpoint(ALIAS, &new_key_file, &new_password_file, &b.ca()),
    );
    assert_opens(&a, &request, &plaintext).await;
}

#[tokio::test]
async fn rotation_moves_the_root_key_from_a_file_to_another_kms_and_back() {
    let dir = temp_dir();
    let tmp = dir.path();
    let b = Custodian::start(tmp);
    b.make_keys().await;
    let (_, key_file, password_file) = b.mint(tmp, "a-client-key").await;
    let endpoint = b.endpoint(ALIAS, &key_file, &password_file, &b.ca());
    let data = tmp.join("a-data");
    let file_key = tmp.join("root.key");
    write_root_key(&file_key, &[0x51; 32]);
    let rotate = |extra: &[&std::ffi::OsStr]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "rotate-root-key".as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ];
        args.extend_from_slice(extra);
        run_kmsd(&args)
    };
    let start_with_file = |key: &Path| {
        let key = key.display().to_string();
        KmsdProcess::spawn(
            &data,
            &[
                "--pool-depth",
                "0",
                "--shutdown-grace-secs",
                "2",
                "--root-key-file",
                &key,
            ],
        )
    };

    // Under the file key: a key and a sealed private key.
    let a = start_with_file(&file_key);
    let (request, plaintext) = seal_a_private_key(&a).await;
    stop(a);

    // The same root key wrapped by B (--from-file) opens the store as it is.
    let same = tmp.join("same.wrapped");
    let (ok, stdout, stderr) = init(&endpoint, &same, Some(&file_key));
    assert!(ok && stdout.contains("wrote the root key"), "{stderr}");
    let a = spawn_a(&data, &same, &endpoint);
    assert_opens(&a, &request, &plaintext).await;
    stop(a);

    // File -> KMS, with a new root key.
    let wrapped = tmp.join("root.wrapped");
    assert!(init(&endpoint, &wrapped, None).0);
    let to_kms: [&std::ffi::OsStr; 6] = [
        "--root-key-file".as_ref(),
        file_key.as_os_str(),
        "--new-root-key-file".as_ref(),
        wrapped.as_os_str(),
        "--new-root-key-kms".as_ref(),
        endpoint.as_ref(),
    ];
    let (ok, stdout, stderr) = rotate(&to_kms);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("--root-key-kms"), "{stdout}");
    let (ok, _, stderr) = rotate(&to_kms);
    assert!(
        !ok && stderr.contains("already under the new root key"),
        "{stderr}"
    );
    // Neither the file key nor the same key wrapped opens it now.
    let stderr = failed_start(&data, &same, &endpoint);
    assert!(stderr.contains("root key does not match"), "{stderr}");

    // Under B's key: what was sealed opens; a rotation while it runs is refused.
    let a = spawn_a(&data, &wrapped, &endpoint);
    assert_opens(&a, &request, &plaintext).await;
    let back_key = tmp.join("back.key");
    write_root_key(&back_key, &[0x52; 32]);
    let to_file: [&std::ffi::OsStr; 6] = [
        "--root-key-file".as_ref(),
        wrapped.as_os_str(),
        "--root-key-kms".as_ref(),
        endpoint.as_ref(),
        "--new-root-key-file".as_ref(),
        back_key.as_os_str(),
    ];
    let (ok, _, stderr) = rotate(&to_file);
    assert!(!ok && stderr.contains("stop it first"), "{stderr}");
    stop(a);
    // A wrong old key is refused and changes nothing.
    let (ok, _, stderr) = rotate(&[
        "--root-key-file".as_ref(),
        same.as_os_str(),
        "--root-key-kms".as_ref(),
        endpoint.as_ref(),
        "--new-root-key-file".as_ref(),
        back_key.as_os_str(),
    ]);
    assert!(!ok && stderr.contains("does not match"), "{stderr}");
    // The wrapped file passed as a plain key: what opens it is named.
    let (ok, _, stderr) = rotate(&[
        "--root-key-file".as_ref(),
        wrapped.as_os_str(),
        "--new-root-key-file".as_ref(),
        back_key.as_os_str(),
    ]);
    assert!(
        !ok && stderr.contains("pass --root-key-kms ENDPOINT"),
        "{stderr}"
    );

    // KMS -> file.
    let (ok, _, stderr) = rotate(&to_file);
    assert!(ok, "{stderr}");
    let stderr = failed_start(&data, &wrapped, &endpoint);
    assert!(stderr.contains("root key does not match"), "{stderr}");
    let a = start_with_file(&back_key);
    assert_opens(&a, &request, &plaintext).await;
    // Nothing of the root key is in the wrapped files: B's blobs only.
    for file in [&same, &wrapped] {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let blob = BASE64
            .decode(json["ciphertext_blob"].as_str().unwrap())
            .unwrap();
        assert!(!blob.windows(32).any(|w| w == [0x51; 32]));
    }
}
