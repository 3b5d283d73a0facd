//! The front doors: only what is tonic's or hyper's. Each transport classifies a call
//! once into a [`kmsd_api::ops::Route`], reads what the caller presented, runs the one
//! admission pipeline ([`crate::pipeline`]) with the operation's handler
//! ([`crate::api`]), and encodes the answer or the error in its own wire form.
//!
//! - [`grpc`]: one tower layer and the tonic services generated from the catalogue.
//! - [`https`]: the official SDKs' protocol: `POST /` with `x-kms-apiname`, signed
//!   with a client key, protobuf bodies and `Error` bodies.
//! - [`limits`]: the bounds both put on what a client controls.

pub mod grpc;
pub mod https;
pub mod limits;

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The layering rule of `docs/architecture.md`: only the transports and the server
    /// wiring know tonic, so the core can be served by any transport.
    #[test]
    fn only_the_transports_and_the_wiring_use_tonic() {
        fn visit(dir: &Path, offenders: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    visit(&path, offenders);
                    continue;
                }
                let relative = path
                    .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                let allowed = relative.starts_with("src/transport/")
                    || relative == "src/server.rs"
                    || relative.starts_with("src/bin/");
                let code = std::fs::read_to_string(&path).unwrap();
                let uses_tonic = code
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("//"))
                    .any(|line| line.contains("tonic::") || line.contains("tonic_"));
                if uses_tonic && !allowed {
                    offenders.push(relative);
                }
            }
        }
        let mut offenders = Vec::new();
        visit(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut offenders,
        );
        assert!(
            offenders.is_empty(),
            "tonic used outside the transports: {offenders:?}"
        );
    }
}
