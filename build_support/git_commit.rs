// Shared by the build scripts of kmsd and kmsctl (`include!`d, not a crate): sets
// `KMSD_GIT_COMMIT` to the commit the binary is built from, for `--version`.

/// Emits `cargo:rustc-env=KMSD_GIT_COMMIT=…`: `KMSD_GIT_COMMIT` from the environment
/// when set (a container build without `.git`), else the short hash of `HEAD`, else
/// `unknown` (a source tarball). The build script reruns when `HEAD` moves, so an
/// incremental build never reports a stale commit.
fn emit_git_commit() {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    let commit = std::env::var("KMSD_GIT_COMMIT")
        .ok()
        .filter(|commit| !commit.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KMSD_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-env-changed=KMSD_GIT_COMMIT");
    // HEAD itself (a branch switch) and the branch it names (a new commit).
    if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={path}");
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &branch])
    {
        println!("cargo:rerun-if-changed={path}");
    }
}
