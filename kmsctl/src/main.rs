//! The `kmsctl` binary; see [`kmsctl`].

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    kmsctl::main_with_args(std::env::args_os().collect()).await
}
