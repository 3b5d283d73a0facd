//! Records the git commit for `kmsd --version`.

include!("build_support/git_commit.rs");

fn main() {
    emit_git_commit();
}
