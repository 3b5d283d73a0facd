//! Replays the fuzz regression corpus (`tests/fuzz_regressions/<target>/*`) through the
//! fuzz targets' own bodies (`fuzz/harness.rs`), so every input a fuzzer once found
//! interesting is checked by the ordinary `cargo test`.

// The one `#[path]` left: the bodies belong to the fuzz crate (`fuzz/`, its own
// workspace, built by cargo-fuzz), and this replay must run exactly those bodies.
#[path = "../../fuzz/harness.rs"]
mod harness;

use std::path::Path;

#[test]
fn every_regression_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    for target in harness::TARGETS {
        let dir = root.join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .collect();
        inputs.sort();
        assert!(
            inputs.len() >= 3,
            "{}: the regression corpus is too small",
            dir.display()
        );
        for path in inputs {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| harness::run(target, &data));
            assert!(outcome.is_ok(), "{target}: {} panicked", path.display());
        }
    }
}

#[test]
fn a_valid_blob_round_trips_through_the_parse_target() {
    let key = kmsd::crypto::secret::MasterKeyMaterial::from_bytes(&[7; 32]).unwrap();
    let blob = kmsd::crypto::blob::seal_advance(
        &key,
        "0b6f3b52-8f4e-4c4e-9b1a-2f7f1c9d6e00",
        b"aad",
        b"secret",
    )
    .unwrap();
    harness::blob_parse(&blob);
    harness::sealer_open(&blob);
    let mut tampered = blob.clone();
    tampered[5] = b'G';
    harness::blob_parse(&tampered);
}
