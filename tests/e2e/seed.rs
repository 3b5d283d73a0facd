//! Seed files (`--seed-file`) through the real server: keys with fixed IDs and aliases
//! at start, idempotent restarts, refused conflicts, and fixed development material
//! that opens one run's ciphertexts in the next.

use crate::support::pb::*;
use crate::support::*;

const SEED: &str = r#"
[[keys]]
id = "key-seeded0000000001"
description = "seeded"
aliases = ["alias/seeded"]
rotation_interval = "30d"
"#;

const FIXED: &str = r#"
[[keys]]
id = "key-fixed00000000001"
aliases = ["alias/fixed"]
initial_version_id = "2b5e7c1a-0f3d-4e8b-9c6a-1d2e3f4a5b6c"
material = "8f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"
"#;

/// A seed file only the server's user may read (one that fixes material must be).
fn write_seed(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("keys.toml");
    std::fs::write(&path, text).unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    path
}

#[tokio::test]
async fn a_seeded_key_is_there_at_start_and_a_restart_changes_nothing() {
    let files = temp_dir();
    let seed = write_seed(files.path(), SEED);
    let data = temp_dir();
    let mut config = test_config(data.path());
    config.seed_file = Some(seed.clone());
    let server = try_start(config.clone(), start_clock()).await.unwrap();
    let key = describe(&server, "alias/seeded").await;
    assert_eq!(key.key_id, "key-seeded0000000001");
    assert_eq!(key.description, "seeded");
    assert!(key.automatic_rotation);
    let listed = server
        .management()
        .list_keys(ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.keys.len(), 1);
    let stopped = server.stop().await;

    let server = try_start(config.clone(), stopped.clock).await.unwrap();
    assert_eq!(describe(&server, "alias/seeded").await, key);
    let listed = server
        .management()
        .list_keys(ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.keys.len(), 1, "the second start created nothing");
    let stopped = server.stop().await;

    // An alias the store gives another key: refused at start, naming the entry, and
    // the new alias of the first entry is not made either.
    std::fs::write(
        &seed,
        "[[keys]]\nid = \"key-seeded0000000001\"\naliases = [\"alias/elsewhere\"]\n\
         [[keys]]\nid = \"key-another000000001\"\naliases = [\"alias/seeded\"]\n",
    )
    .unwrap();
    let err = try_start(config.clone(), stopped.clock.clone())
        .await
        .err()
        .expect("a conflicting seed file stops the start");
    let message = err.to_string();
    assert!(
        message.contains(
            "keys[1] (key-another000000001): the alias alias/seeded names key-seeded0000000001"
        ),
        "{message}"
    );
    let server = try_start(test_config(data.path()), stopped.clock)
        .await
        .unwrap();
    let aliases = server
        .management()
        .list_aliases(ListAliasesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(aliases.aliases.len(), 1, "the refused seed wrote nothing");
}

#[tokio::test]
async fn fixed_material_needs_the_development_flag() {
    let files = temp_dir();
    let data = temp_dir();
    let mut config = test_config(data.path());
    config.seed_file = Some(write_seed(files.path(), FIXED));
    let err = try_start(config, start_clock()).await.err().unwrap();
    assert!(
        err.to_string().contains("--dev-fixed-seed-material"),
        "{err}"
    );
    assert!(
        !data.path().join("kmsd.redb").exists(),
        "a refused seed file is refused before the store is made"
    );
}

#[tokio::test]
async fn fixed_material_opens_one_runs_ciphertexts_in_the_next() {
    let files = temp_dir();
    let seed = write_seed(files.path(), FIXED);
    let first = temp_dir();
    let mut config = test_config(first.path());
    config.seed_file = Some(seed.clone());
    config.dev_fixed_seed_material = true;
    let server = try_start(config.clone(), start_clock()).await.unwrap();
    let plain = server
        .crypto()
        .encrypt(EncryptRequest {
            key_id: "alias/fixed".into(),
            plaintext: b"made in run one".to_vec(),
            aad: b"ci".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let advance = server
        .crypto()
        .advance_encrypt(AdvanceEncryptRequest {
            key_id: "alias/fixed".into(),
            plaintext: b"advance, run one".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    server.stop().await;

    // A new data directory (and root key): only the seed file is shared.
    let second = temp_dir();
    config.data_dir = second.path().to_owned();
    let server = try_start(config, start_clock()).await.unwrap();
    let opened = server
        .crypto()
        .decrypt(DecryptRequest {
            key_id: "alias/fixed".into(),
            ciphertext_blob: plain.ciphertext_blob.clone(),
            iv: plain.iv.clone(),
            aad: b"ci".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.plaintext, b"made in run one");
    let opened = server
        .crypto()
        .advance_decrypt(AdvanceDecryptRequest {
            ciphertext_blob: advance.ciphertext_blob.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.plaintext, b"advance, run one");
    assert_eq!(opened.key_id, "key-fixed00000000001");
}
