//! The root key in an HSM over PKCS#11 (`--root-key-pkcs11`), against SoftHSM2: each
//! test initialises tokens of its own in a temporary directory (its own
//! `SOFTHSM2_CONF`), and runs the real `kmsd` binary with it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::pb::crypto_service_client::CryptoServiceClient;
use crate::support::pb::key_management_service_client::KeyManagementServiceClient;
use crate::support::pb::{CreateKeyRequest, DecryptRequest, GenerateDataKeyPairRequest};
use crate::support::process::KmsdProcess;
use crate::support::*;

/// The PIN of every test token: distinctive, so a test can tell it never appears.
const PIN: &str = "pin-7315-kmsd";
const SO_PIN: &str = "so-pin-2208-kmsd";

/// SoftHSM2's module, or the one `KMSD_TEST_PKCS11_MODULE` names.
fn module() -> PathBuf {
    let module = std::env::var_os("KMSD_TEST_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
    assert!(
        module.exists(),
        "{} is missing: install SoftHSM2 (apt-get install softhsm2), as .ci/run does",
        module.display()
    );
    module
}

/// A SoftHSM2 token directory of its own, with one initialised token, and the PIN in a
/// file only the user can read.
struct SoftHsm {
    dir: tempfile::TempDir,
    conf: PathBuf,
    pin_file: PathBuf,
}

impl SoftHsm {
    fn new(label: &str) -> Self {
        let dir = temp_dir();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let output = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", PIN, "--so-pin", SO_PIN])
            .output()
            .expect("softhsm2-util runs: install SoftHSM2 (apt-get install softhsm2)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let pin_file = dir.path().join("pin");
        write_root_key(&pin_file, format!("{PIN}\n").as_bytes());
        Self {
            dir,
            conf,
            pin_file,
        }
    }

    /// The URI of the key `object` on token `token`, with the PIN from `pin_file`.
    fn uri_with_pin(&self, token: &str, object: &str, pin_file: &Path) -> String {
        format!(
            "pkcs11:token={token};object={object}?module-path={}&pin-source=file:{}",
            module().display(),
            pin_file.display()
        )
    }

    fn uri(&self, token: &str, object: &str) -> String {
        self.uri_with_pin(token, object, &self.pin_file)
    }

    fn env(&self) -> [(&'static str, &Path); 1] {
        [("SOFTHSM2_CONF", self.conf.as_path())]
    }

    /// Runs `kmsd args...` to its end with this token directory.
    fn kmsd(&self, args: &[&OsStr]) -> Outcome {
        let output = Command::new(env!("CARGO_BIN_EXE_kmsd"))
            .env("SOFTHSM2_CONF", &self.conf)
            .args(args)
            .output()
            .unwrap();
        Outcome {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `kmsd root-key init-pkcs11 URI --root-key-file FILE [--create-key]`.
    fn init(&self, uri: &str, file: &Path, create_key: bool) -> Outcome {
        let mut args: Vec<&OsStr> = vec![
            "root-key".as_ref(),
            "init-pkcs11".as_ref(),
            uri.as_ref(),
            "--root-key-file".as_ref(),
            file.as_os_str(),
        ];
        if create_key {
            args.push("--create-key".as_ref());
        }
        self.kmsd(&args)
    }

    /// Starts the server `kmsd --data-dir data --root-key-file file --root-key-pkcs11 uri`
    /// and runs it to its end: for starts that must fail.
    fn failed_start(&self, data: &Path, file: &Path, uri: &str) -> Outcome {
        let outcome = self.kmsd(&[
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--pool-depth".as_ref(),
            "0".as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--root-key-file".as_ref(),
            file.as_os_str(),
            "--root-key-pkcs11".as_ref(),
            uri.as_ref(),
        ]);
        assert!(!outcome.ok, "the start must fail: {}", outcome.stderr);
        assert!(
            !outcome.stderr.contains(PIN),
            "the PIN is never shown: {}",
            outcome.stderr
        );
        outcome
    }

    /// A running server with the root key in `file`, wrapped by `uri`'s key.
    fn spawn(&self, data: &Path, file: &Path, uri: &str) -> KmsdProcess {
        let file = file.display().to_string();
        KmsdProcess::spawn_with_env(
            data,
            &[
                "--pool-depth",
                "0",
                "--shutdown-grace-secs",
                "2",
                "--root-key-file",
                &file,
                "--root-key-pkcs11",
                uri,
            ],
            &self.env(),
        )
    }
}

struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
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
    assert_eq!(opened.plaintext, plaintext);
}

fn stop(mut kmsd: KmsdProcess) {
    kmsd.signal("TERM");
    assert!(kmsd.wait_exit(Duration::from_secs(20)).success());
}

#[tokio::test]
async fn an_hsm_wrapped_root_key_serves_restarts_and_every_misstep_is_named() {
    let hsm = SoftHsm::new("kmsd");
    let uri = hsm.uri("kmsd", "kmsd-root");
    let wrapped = hsm.dir.path().join("root.wrapped");
    let data = hsm.dir.path().join("data");

    // Without --create-key a missing HSM key is named, and nothing is written.
    let outcome = hsm.init(&uri, &wrapped, false);
    assert!(!outcome.ok && outcome.stderr.contains("no AES key labelled \"kmsd-root\""));
    assert!(
        outcome.stderr.contains("--create-key"),
        "{}",
        outcome.stderr
    );
    assert!(!wrapped.exists());
    let outcome = hsm.init(&uri, &wrapped, true);
    assert!(outcome.ok, "{}", outcome.stderr);
    assert!(
        outcome.stdout.contains("--root-key-pkcs11"),
        "{}",
        outcome.stdout
    );
    // The file holds only the sealing: no 32-byte key, and the PIN nowhere.
    let contents = std::fs::read_to_string(&wrapped).unwrap();
    assert!(contents.contains("\"custody\": \"pkcs11\""), "{contents}");
    assert!(!contents.contains(PIN));
    // Again: the key exists, and the file is never overwritten.
    let outcome = hsm.init(&uri, &hsm.dir.path().join("other.wrapped"), true);
    assert!(!outcome.ok && outcome.stderr.contains("already has a key labelled"));
    let outcome = hsm.init(&uri, &wrapped, false);
    assert!(!outcome.ok && outcome.stderr.contains("exists already"));
    assert_eq!(std::fs::read_to_string(&wrapped).unwrap(), contents);

    // Start, keys made and used; restart, and what was sealed opens.
    let kmsd = hsm.spawn(&data, &wrapped, &uri);
    let (request, plaintext) = seal_a_private_key(&kmsd).await;
    assert_opens(&kmsd, &request, &plaintext).await;
    stop(kmsd);
    let kmsd = hsm.spawn(&data, &wrapped, &uri);
    assert_opens(&kmsd, &request, &plaintext).await;
    stop(kmsd);

    // A wrong PIN: the start fails naming the PIN file, never a PIN.
    let wrong_pin = hsm.dir.path().join("wrong-pin");
    write_root_key(&wrong_pin, b"not-the-pin\n");
    let outcome = hsm.failed_start(
        &data,
        &wrapped,
        &hsm.uri_with_pin("kmsd", "kmsd-root", &wrong_pin),
    );
    assert!(
        outcome.stderr.contains("refused the user PIN read from")
            && outcome.stderr.contains(&wrong_pin.display().to_string())
            && outcome.stderr.contains("CKR_PIN_INCORRECT")
            && !outcome.stderr.contains("not-the-pin"),
        "{}",
        outcome.stderr
    );
    // A missing object, a missing token, a missing module.
    let outcome = hsm.failed_start(&data, &wrapped, &hsm.uri("kmsd", "no-such-key"));
    assert!(
        outcome
            .stderr
            .contains("no AES key labelled \"no-such-key\""),
        "{}",
        outcome.stderr
    );
    let outcome = hsm.failed_start(&data, &wrapped, &hsm.uri("no-such-token", "kmsd-root"));
    assert!(
        outcome
            .stderr
            .contains("no token with token=\"no-such-token\"")
            && outcome.stderr.contains("\"kmsd\""),
        "{}",
        outcome.stderr
    );
    let missing_module = uri.replace(&module().display().to_string(), "/nowhere/libhsm.so");
    let outcome = hsm.failed_start(&data, &wrapped, &missing_module);
    assert!(
        outcome
            .stderr
            .contains("cannot load the PKCS#11 module /nowhere/libhsm.so")
            && outcome.stderr.contains("module-path="),
        "{}",
        outcome.stderr
    );
    // A PIN file others may read is refused with the fix.
    let open_pin = hsm.dir.path().join("open-pin");
    std::fs::write(&open_pin, PIN).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open_pin, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let outcome = hsm.failed_start(
        &data,
        &wrapped,
        &hsm.uri_with_pin("kmsd", "kmsd-root", &open_pin),
    );
    assert!(outcome.stderr.contains("chmod 600"), "{}", outcome.stderr);
    // The wrapped file given as a plain root key file: what to add is named.
    let outcome = hsm.kmsd(&[
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--pool-depth".as_ref(),
        "0".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--root-key-file".as_ref(),
        wrapped.as_os_str(),
    ]);
    assert!(
        !outcome.ok && outcome.stderr.contains("pass --root-key-pkcs11 URI"),
        "{}",
        outcome.stderr
    );
    // A PIN in the URI is refused before anything is loaded.
    let outcome = hsm.failed_start(&data, &wrapped, &format!("{uri}&pin-value=1"));
    assert!(
        outcome.stderr.contains("pin-value= is refused"),
        "{}",
        outcome.stderr
    );

    // After all of that the server still starts and opens what it sealed.
    let kmsd = hsm.spawn(&data, &wrapped, &uri);
    assert_opens(&kmsd, &request, &plaintext).await;
}

#[tokio::test]
async fn the_data_and_the_wrapped_root_key_open_nothing_without_the_token() {
    let hsm = SoftHsm::new("kmsd");
    let uri = hsm.uri("kmsd", "kmsd-root");
    let wrapped = hsm.dir.path().join("root.wrapped");
    let data = hsm.dir.path().join("data");
    assert!(hsm.init(&uri, &wrapped, true).ok);
    let kmsd = hsm.spawn(&data, &wrapped, &uri);
    let (request, plaintext) = seal_a_private_key(&kmsd).await;
    stop(kmsd);

    // Everything on disk, copied to another host with a fresh, empty token of the
    // same label and PIN.
    let elsewhere = SoftHsm::new("kmsd");
    let copied_data = elsewhere.dir.path().join("data");
    std::fs::create_dir(&copied_data).unwrap();
    for entry in std::fs::read_dir(&data).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copied_data.join(entry.file_name())).unwrap();
    }
    let copied_wrapped = elsewhere.dir.path().join("root.wrapped");
    std::fs::copy(&wrapped, &copied_wrapped).unwrap();
    let store = copied_data.join("kmsd.redb");
    let before = std::fs::read(&store).unwrap();
    let their_uri = elsewhere.uri("kmsd", "kmsd-root");
    let outcome = elsewhere.failed_start(&copied_data, &copied_wrapped, &their_uri);
    assert!(
        outcome.stderr.contains("no AES key labelled \"kmsd-root\""),
        "{}",
        outcome.stderr
    );
    // A key of the same label made there opens nothing either.
    assert!(
        elsewhere
            .init(
                &their_uri,
                &elsewhere.dir.path().join("theirs.wrapped"),
                true
            )
            .ok
    );
    let outcome = elsewhere.failed_start(&copied_data, &copied_wrapped, &their_uri);
    assert!(
        outcome
            .stderr
            .contains("does not open the wrapped root key"),
        "{}",
        outcome.stderr
    );
    assert_eq!(
        std::fs::read(&store).unwrap(),
        before,
        "the store was not touched"
    );

    // The original token still opens it all.
    let kmsd = hsm.spawn(&data, &wrapped, &uri);
    assert_opens(&kmsd, &request, &plaintext).await;
}

#[tokio::test]
async fn rotation_moves_the_root_key_from_a_file_into_the_hsm_and_back() {
    let hsm = SoftHsm::new("kmsd");
    let uri = hsm.uri("kmsd", "kmsd-root");
    let tmp = hsm.dir.path();
    let data = tmp.join("data");
    let file_key = tmp.join("root.key");
    write_root_key(&file_key, &[0x41; 32]);
    let rotate = |extra: &[&OsStr]| {
        let mut args: Vec<&OsStr> = vec![
            "rotate-root-key".as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ];
        args.extend_from_slice(extra);
        hsm.kmsd(&args)
    };
    let start_with_file = |key: &Path| {
        let key = key.display().to_string();
        KmsdProcess::spawn_with_env(
            &data,
            &[
                "--pool-depth",
                "0",
                "--shutdown-grace-secs",
                "2",
                "--root-key-file",
                &key,
            ],
            &hsm.env(),
        )
    };

    // Under the file key: a key and a sealed private key.
    let kmsd = start_with_file(&file_key);
    let (request, plaintext) = seal_a_private_key(&kmsd).await;
    stop(kmsd);

    // File -> HSM.
    let wrapped = tmp.join("root.wrapped");
    assert!(hsm.init(&uri, &wrapped, true).ok);
    let to_hsm: [&OsStr; 6] = [
        "--root-key-file".as_ref(),
        file_key.as_os_str(),
        "--new-root-key-file".as_ref(),
        wrapped.as_os_str(),
        "--new-root-key-pkcs11".as_ref(),
        uri.as_ref(),
    ];
    let outcome = rotate(&to_hsm);
    assert!(outcome.ok, "{}", outcome.stderr);
    assert!(
        outcome.stdout.contains("--root-key-pkcs11"),
        "{}",
        outcome.stdout
    );
    let outcome = rotate(&to_hsm);
    assert!(
        !outcome.ok && outcome.stderr.contains("already under the new root key"),
        "{}",
        outcome.stderr
    );
    // The file key opens nothing now.
    let outcome = hsm.kmsd(&[
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--root-key-file".as_ref(),
        file_key.as_os_str(),
    ]);
    assert!(
        !outcome.ok && outcome.stderr.contains("root key does not match"),
        "{}",
        outcome.stderr
    );

    // Under the HSM: what was sealed opens; a rotation while it runs is refused.
    let kmsd = hsm.spawn(&data, &wrapped, &uri);
    assert_opens(&kmsd, &request, &plaintext).await;
    let back_key = tmp.join("back.key");
    write_root_key(&back_key, &[0x42; 32]);
    let to_file: [&OsStr; 6] = [
        "--root-key-file".as_ref(),
        wrapped.as_os_str(),
        "--root-key-pkcs11".as_ref(),
        uri.as_ref(),
        "--new-root-key-file".as_ref(),
        back_key.as_os_str(),
    ];
    let outcome = rotate(&to_file);
    assert!(
        !outcome.ok && outcome.stderr.contains("stop it first"),
        "{}",
        outcome.stderr
    );
    stop(kmsd);
    // A wrong old key is refused, and changes nothing: the old file key.
    let outcome = rotate(&[
        "--root-key-file".as_ref(),
        file_key.as_os_str(),
        "--new-root-key-file".as_ref(),
        back_key.as_os_str(),
    ]);
    assert!(
        !outcome.ok && outcome.stderr.contains("does not match"),
        "{}",
        outcome.stderr
    );
    // Another root key wrapped by the same HSM key opens, and does not match.
    let stranger = tmp.join("stranger.wrapped");
    assert!(hsm.init(&uri, &stranger, false).ok);
    let outcome = rotate(&[
        "--root-key-file".as_ref(),
        stranger.as_os_str(),
        "--root-key-pkcs11".as_ref(),
        uri.as_ref(),
        "--new-root-key-file".as_ref(),
        back_key.as_os_str(),
    ]);
    assert!(
        !outcome.ok && outcome.stderr.contains("does not match"),
        "{}",
        outcome.stderr
    );

    // HSM -> file.
    let outcome = rotate(&to_file);
    assert!(outcome.ok, "{}", outcome.stderr);
    let outcome = hsm.failed_start(&data, &wrapped, &uri);
    assert!(
        outcome.stderr.contains("root key does not match"),
        "{}",
        outcome.stderr
    );
    let kmsd = start_with_file(&back_key);
    assert_opens(&kmsd, &request, &plaintext).await;
}
