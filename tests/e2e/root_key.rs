//! The root key file on disk: its permissions, and replacing it with
//! `kmsd rotate-root-key`.

use crate::support::*;

/// Runs the real `kmsd` binary with `args` to its end; returns its status and stderr.
fn run_kmsd(args: &[&std::ffi::OsStr]) -> (std::process::ExitStatus, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kmsd"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_root_key_file_others_may_read_is_refused_at_startup_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = temp_dir();
    let key = tmp.path().join("root.key");
    // What `head -c 32 /dev/urandom > root.key` makes under umask 022.
    std::fs::write(&key, [5u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let data = tmp.path().join("data");
    let (status, stderr) = run_kmsd(&[
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--pool-depth".as_ref(),
        "0".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--root-key-file".as_ref(),
        key.as_os_str(),
    ]);
    assert!(!status.success());
    let fix = format!("chmod 600 {}", key.display());
    assert!(stderr.contains(&fix), "{stderr}");
    assert!(!data.join("kmsd.redb").exists(), "nothing was created");
}
