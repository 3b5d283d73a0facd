//! kmsctl against a real kmsd over a real socket: the `kmsd` binary (built beside
//! this test, `cargo build --bin kmsd`) and the `kmsctl` binary both run as child
//! processes, so these tests need nothing of the server but its command line.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kmsd_api::ErrorCode;
use serde_json::Value;

/// The `kmsd` binary of this build profile: `target/<profile>/kmsd`, two directories
/// above this test's executable (`target/<profile>/deps/cli-<hash>`). Cargo builds a
/// package's own binaries for its tests, not another package's, hence `.ci/run`'s
/// `cargo build --bin kmsd` first. `KMSD_BIN` names another one.
fn kmsd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KMSD_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let kmsd = profile_dir.join(format!("kmsd{}", std::env::consts::EXE_SUFFIX));
    assert!(
        kmsd.is_file(),
        "kmsctl's tests run the kmsd binary, and {} does not exist: build it first with \
         `cargo build --bin kmsd` (same profile as the tests), or name one with KMSD_BIN",
        kmsd.display()
    );
    kmsd
}

/// A kmsd child process on 127.0.0.1:0; stopped with SIGTERM (it drains and closes
/// its store) when stopped or dropped.
struct Server {
    addr: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self::start_in(dir.path().join("data"), &[]);
        server._dir = Some(dir);
        server
    }

    /// Starts kmsd on `data_dir` with `flags` added to the test defaults (port 0, no
    /// pool, JSON logs), and waits for the address it logs once it is listening: the
    /// server binds port 0 itself, so no other process can take the port meanwhile.
    fn start_in(data_dir: PathBuf, flags: &[OsString]) -> Self {
        Self::start_listening(data_dir, "127.0.0.1:0", flags)
    }

    /// [`Self::start_in`] listening on `listen`.
    fn start_listening(data_dir: PathBuf, listen: &str, flags: &[OsString]) -> Self {
        std::fs::create_dir_all(&data_dir).unwrap();
        // Beside the data directory, so a restore can copy the directory whole.
        let log = data_dir.with_extension("kmsd.log");
        let mut child = Command::new(kmsd_binary())
            .args(["--listen", listen, "--data-dir"])
            .arg(&data_dir)
            .args(["--log-format", "json", "--pool-depth", "0"])
            .args(["--shutdown-grace-secs", "5"])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("run kmsd");
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Some(addr) = listening_addr(&log) {
                break addr;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("kmsd exited ({status}):\n{}", read_log(&log));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("kmsd did not report its address:\n{}", read_log(&log));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            addr,
            child: Some(child),
            log,
            _dir: None,
        }
    }

    /// Stops the server and waits until its store is closed.
    fn stop(mut self) {
        self.shutdown();
    }

    /// SIGTERM, then the exit: kmsd drains its calls and closes its store.
    fn shutdown(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                if !std::thread::panicking() {
                    panic!("kmsd did not stop on SIGTERM:\n{}", read_log(&self.log));
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `kmsctl ARGS` against this server, in `cwd`.
    fn kmsctl(&self, cwd: &Path, args: &[&str]) -> Output {
        kmsctl_at(&self.addr.to_string(), cwd, args)
    }

    /// Runs `kmsctl --output json ARGS`, asserts success and returns the document.
    fn json(&self, cwd: &Path, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let out = self.kmsctl(cwd, &all);
        assert_success(&out, args);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|err| panic!("{args:?}: {err}: {}", text(&out.stdout)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The address of kmsd's `kmsd listening` line in its JSON log, once written.
fn listening_addr(log: &Path) -> Option<SocketAddr> {
    read_log(log).lines().find_map(|line| {
        let line: Value = serde_json::from_str(line).ok()?;
        let fields = &line["fields"];
        (fields["message"] == "kmsd listening")
            .then(|| fields["local_addr"].as_str()?.parse().ok())
            .flatten()
    })
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

fn kmsctl_at(endpoint: &str, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmsctl"))
        .current_dir(cwd)
        .env("KMSCTL_ENDPOINT", endpoint)
        .env_remove("KMSCTL_TOKEN")
        .env_remove("KMSCTL_OUTPUT")
        .args(args)
        .output()
        .expect("run kmsctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "kmsctl {args:?} failed ({:?}):\n{}",
        out.status.code(),
        text(&out.stderr)
    );
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `kmsctl --version` names the release and the commit it was built from.
#[test]
fn version_names_the_release_and_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_kmsctl"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let line = text(&out.stdout);
    let commit = line
        .trim()
        .strip_prefix(concat!("kmsctl ", env!("CARGO_PKG_VERSION"), " (commit "))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected version line {line:?}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{line:?}"
    );
}

#[test]
fn keys_aliases_and_versions_round_trip_in_json_and_text() {
    let server = Server::start();
    let cwd = tempfile::tempdir().unwrap();
    let cwd = cwd.path();

    let created = server.json(cwd, &["key", "create", "--description", "payments"]);
    let key_id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    assert!(key_id.starts_with("key-"), "{created}");
    assert_eq!(created["KeyMetadata"]["KeyState"], "Enabled");
    assert_eq!(created["KeyMetadata"]["Description"], "payments");

    server.json(cwd, &["alias", "create", "alias/payments", &key_id]);
    let described = server.json(cwd, &["key", "describe", "alias/payments"]);
    assert_eq!(described["KeyMetadata"]["KeyId"], key_id.as_str());

    // Human output: aligned fields, readable dates.
    let out = server.kmsctl(cwd, &["key", "describe", "alias/payments"]);
    assert_success(&out, &["key", "describe"]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!("Key ID           {key_id}")),
        "{shown}"
    );
    assert!(shown.contains(" UTC\n"), "{shown}");

    let listed = server.json(cwd, &["key", "list", "--page-size", "1"]);
    assert_eq!(listed["Keys"][0]["KeyId"], key_id.as_str(), "{listed}");
    let out = server.kmsctl(cwd, &["alias", "list"]);
    assert_success(&out, &["alias", "list"]);
    let shown = text(&out.stdout);
    assert!(shown.starts_with("ALIAS           KEY ID"), "{shown}");
    assert!(
        shown.contains(&format!("alias/payments  {key_id}")),
        "{shown}"
    );

    let rotated = server.json(cwd, &["key", "rotate", &key_id]);
    let version = rotated["KeyVersion"]["KeyVersionId"].as_str().unwrap();
    let versions = server.json(cwd, &["version", "list", "alias/payments"]);
    assert_eq!(versions["KeyVersions"].as_array().unwrap().len(), 2);
    let one = server.json(cwd, &["version", "describe", &key_id, version]);
    assert_eq!(one["KeyVersion"]["KeyVersionId"], version);

    let policy = server.json(cwd, &["key", "rotation-policy", &key_id, "--every", "30d"]);
    assert_eq!(policy["KeyMetadata"]["AutomaticRotation"], true);
    assert_eq!(policy["KeyMetadata"]["RotationInterval"], "2592000s");
    let policy = server.json(cwd, &["key", "rotation-policy", &key_id, "--off"]);
    assert_eq!(policy["KeyMetadata"]["AutomaticRotation"], false);

    let disabled = server.json(cwd, &["key", "disable", &key_id]);
    assert_eq!(disabled["KeyMetadata"]["KeyState"], "Disabled");
    let enabled = server.json(cwd, &["key", "enable", &key_id]);
    assert_eq!(enabled["KeyMetadata"]["KeyState"], "Enabled");
    let pending = server.json(cwd, &["key", "schedule-deletion", &key_id, "--days", "7"]);
    assert_eq!(pending["KeyMetadata"]["KeyState"], "PendingDeletion");
    assert!(
        !pending["KeyMetadata"]["DeleteDate"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let back = server.json(cwd, &["key", "cancel-deletion", &key_id]);
    assert_eq!(back["KeyMetadata"]["KeyState"], "Enabled");

    let other = server.json(cwd, &["key", "create"]);
    let other_id = other["KeyMetadata"]["KeyId"].as_str().unwrap();
    let moved = server.json(cwd, &["alias", "update", "alias/payments", other_id]);
    assert_eq!(moved["Alias"]["KeyId"], other_id);
    server.json(cwd, &["alias", "delete", "alias/payments"]);
    let aliases = server.json(cwd, &["alias", "list", "--key", other_id]);
    assert_eq!(aliases["Aliases"].as_array().unwrap().len(), 0);
}

#[test]
fn key_pairs_go_to_files_and_the_private_key_opens_to_the_public_one() {
    use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let key_id = server.json(cwd, &["key", "create"])["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    for advance in [false, true] {
        let mut args = vec![
            "keypair",
            "generate",
            &key_id,
            "--spec",
            "EC_P256",
            "--public-out",
            "pub.pem",
            "--private-out",
            "key.enc",
            "--aad",
            "order-42",
        ];
        if advance {
            args.push("--advance");
        }
        let out = server.kmsctl(cwd, &args);
        assert_success(&out, &args);
        #[cfg(unix)]
        assert_eq!(mode(&cwd.join("key.enc")), 0o600);
        assert!(!cwd.join("plain.pem").exists());
        let sealed: Value =
            serde_json::from_slice(&std::fs::read(cwd.join("key.enc")).unwrap()).unwrap();
        assert_eq!(sealed.get("KeyVersionId").is_some(), advance, "{sealed}");

        // The wrong AAD opens nothing, with the public error code and a request ID.
        let out = server.kmsctl(cwd, &["decrypt", "--in", "key.enc", "--out", "plain.pem"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!(
                "{}: The ciphertext could not be decrypted.",
                ErrorCode::InvalidParameter.as_str()
            )),
            "{err}"
        );
        assert!(err.contains("request ID: "), "{err}");
        assert!(!cwd.join("plain.pem").exists());

        let args = [
            "decrypt",
            "--in",
            "key.enc",
            "--out",
            "plain.pem",
            "--aad",
            "order-42",
        ];
        assert_success(&server.kmsctl(cwd, &args), &args);
        #[cfg(unix)]
        assert_eq!(mode(&cwd.join("plain.pem")), 0o600);
        let private = p256::SecretKey::from_pkcs8_pem(
            &std::fs::read_to_string(cwd.join("plain.pem")).unwrap(),
        )
        .unwrap();
        let public = p256::PublicKey::from_public_key_pem(
            &std::fs::read_to_string(cwd.join("pub.pem")).unwrap(),
        )
        .unwrap();
        assert_eq!(private.public_key(), public, "advance: {advance}");
        std::fs::remove_file(cwd.join("plain.pem")).unwrap();
    }

    // Plaintext only when asked for by name.
    let args = [
        "keypair",
        "generate",
        &key_id,
        "--public-out",
        "pub2.pem",
        "--private-out",
        "key2.enc",
        "--plaintext-private-out",
        "key2.pem",
    ];
    assert_success(&server.kmsctl(cwd, &args), &args);
    #[cfg(unix)]
    assert_eq!(mode(&cwd.join("key2.pem")), 0o600);
    let private =
        p256::SecretKey::from_pkcs8_pem(&std::fs::read_to_string(cwd.join("key2.pem")).unwrap())
            .unwrap();
    let public = p256::PublicKey::from_public_key_pem(
        &std::fs::read_to_string(cwd.join("pub2.pem")).unwrap(),
    )
    .unwrap();
    assert_eq!(private.public_key(), public);
}

#[test]
fn encrypt_datakey_random_and_hash() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let key_id = server.json(cwd, &["key", "create"])["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(cwd.join("secret.txt"), b"attack at dawn").unwrap();
    for advance in [false, true] {
        let mut args = vec![
            "encrypt",
            &key_id,
            "--in",
            "secret.txt",
            "--out",
            "secret.enc",
        ];
        if advance {
            args.push("--advance");
        }
        server.json(cwd, &args);
        let args = ["decrypt", "--in", "secret.enc", "--out", "-"];
        let out = server.kmsctl(cwd, &args);
        assert_success(&out, &args);
        assert_eq!(
            out.stdout, b"attack at dawn",
            "stdout holds the plaintext only"
        );

        let mut args = vec![
            "datakey",
            "generate",
            &key_id,
            "--bytes",
            "16",
            "--plaintext-out",
            "dk.bin",
            "--out",
            "dk.enc",
        ];
        if advance {
            args.push("--advance");
        }
        server.json(cwd, &args);
        let data_key = std::fs::read(cwd.join("dk.bin")).unwrap();
        assert_eq!(data_key.len(), 16);
        #[cfg(unix)]
        assert_eq!(mode(&cwd.join("dk.bin")), 0o600);
        server.json(cwd, &["decrypt", "--in", "dk.enc", "--out", "dk2.bin"]);
        assert_eq!(std::fs::read(cwd.join("dk2.bin")).unwrap(), data_key);
    }

    server.json(cwd, &["random", "--length", "48", "--out", "r.bin"]);
    assert_eq!(std::fs::read(cwd.join("r.bin")).unwrap().len(), 48);

    std::fs::write(cwd.join("abc"), b"abc").unwrap();
    let hashed = server.json(cwd, &["hash", "--in", "abc"]);
    assert_eq!(
        hashed["DigestHex"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn rsa_encryption_keys_encrypt_and_decrypt_files_with_their_algorithm() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let args = [
        "key",
        "create",
        "--spec",
        "RSA_2048",
        "--usage",
        "ENCRYPT/DECRYPT",
    ];
    let created = server.json(cwd, &args);
    assert_eq!(created["KeyMetadata"]["KeyUsage"], "ENCRYPT/DECRYPT");
    let key_id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    std::fs::write(cwd.join("dk.bin"), [7u8; 32]).unwrap();
    for algorithm in ["RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1"] {
        let args = [
            "encrypt",
            &key_id,
            "--in",
            "dk.bin",
            "--out",
            "dk.enc",
            "--algorithm",
            algorithm,
        ];
        server.json(cwd, &args);
        // The file names the algorithm, so decrypt needs no flag.
        let file: Value =
            serde_json::from_slice(&std::fs::read(cwd.join("dk.enc")).unwrap()).unwrap();
        assert_eq!(file["Algorithm"], algorithm);
        assert!(file.get("Iv").is_none(), "{file}");
        server.json(cwd, &["decrypt", "--in", "dk.enc", "--out", "dk2.bin"]);
        assert_eq!(std::fs::read(cwd.join("dk2.bin")).unwrap(), [7u8; 32]);
    }
    // Without --algorithm the RSA key says which parameter is missing.
    let args = ["encrypt", &key_id, "--in", "dk.bin", "--out", "x.enc"];
    let out = server.kmsctl(cwd, &args);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Algorithm"),
        "{}",
        text(&out.stderr)
    );
    // public-key gives the key other tools encrypt to (here openssl); a ciphertext
    // file made of their output opens with --algorithm.
    let public = server.json(cwd, &["public-key", &key_id]);
    std::fs::write(
        cwd.join("public.pem"),
        public["PublicKey"].as_str().unwrap(),
    )
    .unwrap();
    let sealed = Command::new("openssl")
        .current_dir(cwd)
        .args([
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            "public.pem",
            "-in",
            "dk.bin",
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
        ])
        .output()
        .expect("openssl");
    assert!(sealed.status.success(), "{}", text(&sealed.stderr));
    use base64::Engine;
    let file = serde_json::json!({
        "KeyId": key_id,
        "CiphertextBlob": base64::engine::general_purpose::STANDARD.encode(&sealed.stdout),
    });
    std::fs::write(cwd.join("openssl.enc"), file.to_string()).unwrap();
    let args = [
        "decrypt",
        "--in",
        "openssl.enc",
        "--out",
        "dk3.bin",
        "--algorithm",
        "RSAES_OAEP_SHA_256",
    ];
    server.json(cwd, &args);
    assert_eq!(std::fs::read(cwd.join("dk3.bin")).unwrap(), [7u8; 32]);
}

#[test]
fn secrets_come_from_files_and_go_to_files_or_an_explicit_stdout() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(cwd.join("v1.txt"), b"db-password-1").unwrap();
    let created = server.json(
        cwd,
        &[
            "secret",
            "create",
            "db/app",
            "--in",
            "v1.txt",
            "--version-id",
            "v1",
        ],
    );
    assert_eq!(created["VersionId"], "v1");
    // No flag takes the value itself.
    let out = server.kmsctl(cwd, &["secret", "create", "db/other", "db-password"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    std::fs::write(cwd.join("v2.bin"), [0u8, 1, 2, 255]).unwrap();
    let put = server.json(
        cwd,
        &[
            "secret",
            "put",
            "db/app",
            "--version-id",
            "v2",
            "--in",
            "v2.bin",
            "--binary",
        ],
    );
    assert_eq!(put["VersionStages"], serde_json::json!(["ACSCurrent"]));
    // A non-UTF-8 value without --binary is refused before anything is sent.
    let out = server.kmsctl(
        cwd,
        &[
            "secret",
            "put",
            "db/app",
            "--version-id",
            "v3",
            "--in",
            "v2.bin",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    let got = server.json(cwd, &["secret", "get", "db/app", "--out", "current.bin"]);
    assert_eq!(got["VersionId"], "v2");
    assert_eq!(
        std::fs::read(cwd.join("current.bin")).unwrap(),
        [0u8, 1, 2, 255]
    );
    #[cfg(unix)]
    assert_eq!(mode(&cwd.join("current.bin")), 0o600);
    // `get` needs a file or --stdout; with --stdout, stdout holds the value alone.
    let out = server.kmsctl(cwd, &["secret", "get", "db/app"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let args = [
        "secret",
        "get",
        "db/app",
        "--stage",
        "ACSPrevious",
        "--stdout",
    ];
    let out = server.kmsctl(cwd, &args);
    assert_success(&out, &args);
    assert_eq!(out.stdout, b"db-password-1");

    let versions = server.json(cwd, &["secret", "versions", "db/app", "--all"]);
    assert_eq!(versions["VersionIds"].as_array().unwrap().len(), 2);
    server.json(
        cwd,
        &[
            "secret",
            "stage",
            "db/app",
            "ACSCurrent",
            "--from",
            "v2",
            "--to",
            "v1",
        ],
    );
    let args = ["secret", "get", "db/app", "--stdout"];
    let out = server.kmsctl(cwd, &args);
    assert_eq!(out.stdout, b"db-password-1");
    server.json(
        cwd,
        &["secret", "rotation-policy", "db/app", "--every", "30d"],
    );
    server.json(
        cwd,
        &[
            "secret",
            "update",
            "db/app",
            "--description",
            "app database",
        ],
    );
    let described = server.json(cwd, &["secret", "describe", "db/app"]);
    assert_eq!(described["RotationInterval"], "2592000s");
    assert_eq!(described["Description"], "app database");
    let listed = server.json(cwd, &["secret", "list", "--prefix", "db/"]);
    assert_eq!(listed["SecretList"].as_array().unwrap().len(), 1);
    server.json(cwd, &["secret", "delete", "db/app", "--days", "7"]);
    server.json(cwd, &["secret", "restore", "db/app"]);
    server.json(cwd, &["secret", "delete", "db/app", "--force"]);
    let out = server.kmsctl(cwd, &["secret", "describe", "db/app"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

#[test]
fn ml_dsa_and_ed25519_keys_sign_and_verify_files() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(cwd.join("release.txt"), b"release 1.2.3").unwrap();
    // A 64-byte stand-in for a mu (kmsd cannot tell one from a real one; the server's
    // tests check what a mu means).
    std::fs::write(cwd.join("mu.bin"), [0x6d; 64]).unwrap();
    std::fs::write(cwd.join("other-mu.bin"), [0x6e; 64]).unwrap();
    for (spec, algorithm, mu) in [
        ("ML_DSA_65", "ML_DSA", true),
        ("ML_DSA_44", "ML_DSA", false),
        ("ED25519", "ED25519", false),
    ] {
        let created = server.json(cwd, &["key", "create", "--spec", spec]);
        assert_eq!(created["KeyMetadata"]["KeySpec"], spec);
        let key_id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        let mut inputs = vec![("release.txt", "release.sig", None)];
        if mu {
            inputs.push(("mu.bin", "mu.sig", Some("--external-mu")));
        }
        for (input, signature, flag) in inputs {
            let mut args = vec![
                "sign",
                &key_id,
                "--in",
                input,
                "--algorithm",
                algorithm,
                "--out",
                signature,
            ];
            args.extend(flag);
            let signed = server.json(cwd, &args);
            let expected = if flag.is_some() { "EXTERNAL_MU" } else { "RAW" };
            assert_eq!(signed["MessageType"], expected);
            let mut args = vec![
                "verify",
                &key_id,
                "--in",
                input,
                "--signature",
                signature,
                "--algorithm",
                algorithm,
            ];
            args.extend(flag);
            let out = server.kmsctl(cwd, &args);
            assert_success(&out, &args);
            assert_eq!(text(&out.stdout).trim(), "the signature is valid", "{spec}");
            let tampered = if flag.is_some() {
                "other-mu.bin"
            } else {
                "mu.bin"
            };
            args[3] = tampered;
            let out = server.kmsctl(cwd, &args);
            assert_eq!(
                text(&out.stdout).trim(),
                "the signature is NOT valid",
                "{spec}"
            );
        }
        let args = ["public-key", &key_id];
        let out = server.kmsctl(cwd, &args);
        assert_success(&out, &args);
        assert!(text(&out.stdout).contains("-----BEGIN PUBLIC KEY-----"));
    }
    // clap refuses both input forms at once.
    let args = [
        "sign",
        "key-x",
        "--in",
        "mu.bin",
        "--algorithm",
        "ML_DSA",
        "--out",
        "x",
        "--digest",
        "--external-mu",
    ];
    assert!(!server.kmsctl(cwd, &args).status.success());
}

#[test]
fn exit_codes_tell_the_class_of_the_failure() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();

    let out = server.kmsctl(
        cwd,
        &["key", "describe", "key-00000000000000000000000000000000"],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "not found: {}",
        text(&out.stderr)
    );
    let err = text(&out.stderr);
    assert!(err.starts_with("kmsctl: Forbidden.KeyNotFound: "), "{err}");
    assert!(err.contains("status: NOT_FOUND"), "{err}");
    assert!(err.contains("request ID: "), "{err}");

    let out = server.kmsctl(cwd, &["key", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "usage");
    let out = server.kmsctl(cwd, &["key", "create", "--spec", "NOPE"]);
    assert_eq!(out.status.code(), Some(2), "a refused parameter");

    let key_id = server.json(cwd, &["key", "create"])["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    server.json(cwd, &["alias", "create", "alias/taken", &key_id]);
    let out = server.kmsctl(cwd, &["alias", "create", "alias/taken", &key_id]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "conflict: {}",
        text(&out.stderr)
    );
    server.json(cwd, &["key", "disable", &key_id]);
    std::fs::write(cwd.join("m"), b"m").unwrap();
    let out = server.kmsctl(cwd, &["encrypt", &key_id, "--in", "m", "--out", "m.enc"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "disabled: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains(ErrorCode::InvalidKeyState.as_str()));

    // Nobody listens on a port just bound and closed... at best; an unroutable
    // endpoint with a short timeout is certain.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = kmsctl_at(&addr, cwd, &["key", "list"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "unavailable: {}",
        text(&out.stderr)
    );
}

#[test]
fn the_token_comes_from_the_environment_or_a_file_and_denials_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let token = "kmsctl-test-token";
    let hash = {
        use std::fmt::Write;
        let digest = ring_sha256(token.as_bytes());
        digest.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    };
    let auth = dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        format!(
            "[[principals]]\nname = \"ops\"\ntoken_sha256 = \"{hash}\"\n\
             operations = [\"CreateKey\", \"ListKeys\"]\nkeys = [\"*\"]\n"
        ),
    )
    .unwrap();
    let server = Server::start_in(
        dir.path().join("data"),
        &["--auth-config".into(), auth.into()],
    );
    let cwd = dir.path();
    let out = server.kmsctl(cwd, &["key", "list"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "no token: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains(ErrorCode::SignatureNotMatch.as_str()));

    let with_env = Command::new(env!("CARGO_BIN_EXE_kmsctl"))
        .env("KMSCTL_ENDPOINT", server.addr.to_string())
        .env("KMSCTL_TOKEN", token)
        .args(["key", "create"])
        .output()
        .unwrap();
    assert_success(&with_env, &["key", "create", "(KMSCTL_TOKEN)"]);

    std::fs::write(cwd.join("token"), format!("{token}\n")).unwrap();
    let out = server.kmsctl(cwd, &["--token-file", "token", "key", "list"]);
    assert_success(&out, &["--token-file"]);
    let out = server.kmsctl(cwd, &["--token-file", "token", "key", "rotate", "key-x"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "not granted: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains(ErrorCode::NoPermission.as_str()));
    // There is no flag that takes the token itself.
    let out = server.kmsctl(cwd, &["--token", token, "key", "list"]);
    assert_eq!(out.status.code(), Some(2));
}

fn ring_sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

#[test]
fn completions_and_the_operation_table_need_no_server() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef kmsctl"),
        ("fish", "complete -c kmsctl"),
    ] {
        let out = kmsctl_at("127.0.0.1:1", dir.path(), &["completions", shell]);
        assert_success(&out, &["completions", shell]);
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("schedule-deletion"), "{shell}");
    }
    let out = kmsctl_at("127.0.0.1:1", dir.path(), &["operations"]);
    assert_success(&out, &["operations"]);
    for op in kmsd_api::ops::Operation::ALL {
        assert!(text(&out.stdout).contains(op.name()), "{op}");
    }
}

/// kmsctl over mTLS: the server requires a client certificate from its CA.
#[test]
fn tls_and_mtls_with_a_ca_and_a_client_certificate() {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType,
    };
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "kmsctl test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let issue = |params: CertificateParams, name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        std::fs::write(cwd.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(cwd.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    };
    let mut server_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server_params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    issue(server_params, "server");
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "ops");
    issue(client_params, "client");
    std::fs::write(cwd.join("ca.pem"), ca.pem()).unwrap();

    let server = Server::start_in(
        cwd.join("data"),
        &[
            "--tls-cert".into(),
            cwd.join("server.pem").into(),
            "--tls-key".into(),
            cwd.join("server.key").into(),
            "--tls-client-ca".into(),
            cwd.join("ca.pem").into(),
        ],
    );
    let port = server.addr.port();
    let with_client = [
        "--ca-cert",
        "ca.pem",
        "--client-cert",
        "client.pem",
        "--client-key",
        "client.key",
    ];
    let mut args = with_client.to_vec();
    args.extend(["key", "create"]);
    let endpoint = format!("localhost:{port}");
    let out = kmsctl_at(&endpoint, cwd, &args);
    assert_success(&out, &args);
    // By IP, naming the certificate's host.
    let mut args = with_client.to_vec();
    args.extend(["--tls-server-name", "localhost", "key", "list"]);
    let out = kmsctl_at(&format!("https://127.0.0.1:{port}"), cwd, &args);
    assert_success(&out, &args);
    // Without a client certificate the handshake fails: unavailable.
    let out = kmsctl_at(&endpoint, cwd, &["--ca-cert", "ca.pem", "key", "list"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    // Plaintext against a TLS server fails too.
    let out = kmsctl_at(&endpoint, cwd, &["key", "list"]);
    assert_ne!(out.status.code(), Some(0));
    // A client certificate without TLS is a usage error.
    let out = kmsctl_at(
        &endpoint,
        cwd,
        &[
            "--client-cert",
            "client.pem",
            "--client-key",
            "client.key",
            "key",
            "list",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// The README's backup and restore procedure, with kmsctl: a backup of a running
/// server, restored into a new data directory, serves the same keys and opens a
/// ciphertext made before the backup.
#[test]
fn backup_then_restore_serves_the_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let root_key = cwd.join("root.key");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&root_key)
            .unwrap();
        std::io::Write::write_all(&mut file, &[42u8; 32]).unwrap();
    }
    let with_root_key = ["--root-key-file".into(), root_key.into()];
    let server = Server::start_in(cwd.join("data"), &with_root_key);
    let key_id =
        server.json(cwd, &["key", "create", "--description", "kept"])["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_owned();
    server.json(cwd, &["alias", "create", "alias/kept", &key_id]);
    std::fs::write(cwd.join("m.txt"), b"made before the backup").unwrap();
    server.json(
        cwd,
        &["encrypt", "alias/kept", "--in", "m.txt", "--out", "m.enc"],
    );
    let shown = server.json(cwd, &["backup", "--out", "kmsd-backup.redb"]);
    let backup = cwd.join("kmsd-backup.redb");
    assert_eq!(
        shown["Size"].as_u64().unwrap(),
        std::fs::metadata(&backup).unwrap().len()
    );
    #[cfg(unix)]
    assert_eq!(mode(&backup), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(cwd)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".kmsctl"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A scheduled job's form: named by time, the older ones pruned (an unrelated
    // file in the directory is left alone).
    std::fs::create_dir(cwd.join("nightly")).unwrap();
    let stale = cwd.join("nightly/kmsd-20200101T000000Z.redb");
    std::fs::write(&stale, b"an old backup").unwrap();
    std::fs::write(cwd.join("nightly/notes.txt"), b"kept").unwrap();
    let shown = server.json(cwd, &["backup", "--out-dir", "nightly", "--keep", "1"]);
    let written = std::path::PathBuf::from(shown["File"].as_str().unwrap());
    let name = written.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("kmsd-20") && name.ends_with("Z.redb"),
        "{name}"
    );
    assert_eq!(shown["Removed"].as_array().unwrap().len(), 1, "{shown}");
    assert!(!stale.exists(), "the older backup is pruned");
    let mut left: Vec<String> = std::fs::read_dir(cwd.join("nightly"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [name, "notes.txt".to_owned()]);
    server.stop();

    // Restore: the backup becomes the store of a new data directory.
    std::fs::create_dir(cwd.join("restored")).unwrap();
    std::fs::copy(&backup, cwd.join("restored/kmsd.redb")).unwrap();
    let server = Server::start_in(cwd.join("restored"), &with_root_key);
    let described = server.json(cwd, &["key", "describe", "alias/kept"]);
    assert_eq!(described["KeyMetadata"]["KeyId"], key_id.as_str());
    assert_eq!(described["KeyMetadata"]["Description"], "kept");
    let args = ["decrypt", "--in", "m.enc", "--out", "-"];
    let out = server.kmsctl(cwd, &args);
    assert_success(&out, &args);
    assert_eq!(out.stdout, b"made before the backup");
}

/// The temporary files of backups in `dir`.
fn backup_temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".kmsctl-backup-"))
        })
        .collect()
}

/// Starts `kmsctl backup --out DIR/backup.redb` against `endpoint` and waits until its
/// temporary file exists (the server there never answers, so it stays). The caller
/// signals and waits for the child.
#[allow(clippy::zombie_processes)]
fn backup_in_flight(endpoint: &str, dir: &Path, before: &[PathBuf]) -> (Child, PathBuf) {
    let child = Command::new(env!("CARGO_BIN_EXE_kmsctl"))
        .current_dir(dir)
        .env("KMSCTL_ENDPOINT", endpoint)
        .args(["backup", "--out", "backup.redb"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let new: Vec<PathBuf> = backup_temp_files(dir)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        if let [temp] = new.as_slice() {
            return (child, temp.clone());
        }
        assert!(Instant::now() < deadline, "no temporary file appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(child: &Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, signal).unwrap();
}

/// An interrupted backup leaves no temporary file: SIGINT and SIGTERM remove it, and
/// the next run removes one a SIGKILL left.
#[test]
fn an_interrupted_backup_leaves_no_temporary_file() {
    use rustix::process::Signal;
    // A server that accepts connections and never answers: the backup waits.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    for signal in [Signal::INT, Signal::TERM] {
        let (child, _) = backup_in_flight(&endpoint, dir.path(), &[]);
        send(&child, signal);
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{signal:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("interrupted"),
            "{}",
            text(&out.stderr)
        );
        assert!(backup_temp_files(dir.path()).is_empty(), "{signal:?}");
    }
    // SIGKILL leaves the file; the next run removes it and keeps its own.
    let (mut killed, left) = backup_in_flight(&endpoint, dir.path(), &[]);
    send(&killed, Signal::KILL);
    killed.wait().unwrap();
    assert!(left.exists(), "SIGKILL cannot clean up");
    let (next, own) = backup_in_flight(&endpoint, dir.path(), std::slice::from_ref(&left));
    assert!(!left.exists(), "the next run removed the leftover");
    assert!(own.exists());
    send(&next, Signal::INT);
    next.wait_with_output().unwrap();
    assert!(backup_temp_files(dir.path()).is_empty());
    assert!(
        !dir.path().join("backup.redb").exists(),
        "nothing was written"
    );
}

/// Every create command sends an idempotency token: two runs with the same
/// `--idempotency-token` make one key (and one version, one secret), runs without one
/// make one each, and the same token with other parameters is refused (exit 2).
#[test]
fn create_commands_send_an_idempotency_token() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let create = [
        "key",
        "create",
        "--description",
        "once",
        "--idempotency-token",
        "t-1",
    ];
    let first = server.json(cwd, &create);
    let again = server.json(cwd, &create);
    assert_eq!(first["KeyMetadata"]["KeyId"], again["KeyMetadata"]["KeyId"]);
    let keys = |server: &Server| {
        server.json(cwd, &["key", "list"])["Keys"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(keys(&server), 1);
    // A generated token per run: two runs, two keys.
    server.json(cwd, &["key", "create"]);
    server.json(cwd, &["key", "create"]);
    assert_eq!(keys(&server), 3);
    // The token with another description: refused as a usage error, nothing made.
    let out = server.kmsctl(
        cwd,
        &[
            "key",
            "create",
            "--description",
            "other",
            "--idempotency-token",
            "t-1",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("IdempotencyToken"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(keys(&server), 3);

    let key_id = first["KeyMetadata"]["KeyId"].as_str().unwrap();
    let rotate = ["key", "rotate", key_id, "--idempotency-token", "r-1"];
    let v1 = server.json(cwd, &rotate);
    let v2 = server.json(cwd, &rotate);
    assert_eq!(
        v1["KeyVersion"]["KeyVersionId"],
        v2["KeyVersion"]["KeyVersionId"]
    );
    let versions = server.json(cwd, &["version", "list", key_id]);
    assert_eq!(versions["KeyVersions"].as_array().unwrap().len(), 2);

    std::fs::write(cwd.join("value.txt"), "s3cret").unwrap();
    let secret = [
        "secret",
        "create",
        "db/once",
        "--in",
        "value.txt",
        "--idempotency-token",
        "s-1",
    ];
    let s1 = server.json(cwd, &secret);
    let s2 = server.json(cwd, &secret);
    assert_eq!(s1["VersionId"], s2["VersionId"]);
}

/// A create against a server that is not up yet is retried with the same token until
/// it answers: the key is made once, and kmsctl says it retried.
#[test]
fn a_create_retries_with_its_token_until_the_server_answers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_owned();
    let kmsctl = Command::new(env!("CARGO_BIN_EXE_kmsctl"))
        .current_dir(&cwd)
        .env("KMSCTL_ENDPOINT", &endpoint)
        .env_remove("KMSCTL_TOKEN")
        .args([
            "--output",
            "json",
            "key",
            "create",
            "--description",
            "retried",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kmsctl");
    // The first attempt finds nothing listening; the server comes up meanwhile.
    std::thread::sleep(Duration::from_millis(150));
    let server = Server::start_listening(dir.path().join("data"), &endpoint, &[]);
    let out = kmsctl.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status.code());
    assert!(
        stderr.contains("retrying with the same idempotency token"),
        "{stderr}"
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = server.json(&cwd, &["key", "list"]);
    let keys = listed["Keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{listed}");
    assert_eq!(keys[0]["KeyId"], created["KeyMetadata"]["KeyId"]);
}
