//! Records the git commit for `kmsctl --version`.

include!("../build_support/git_commit.rs");

fn main() {
    emit_git_commit();
}
