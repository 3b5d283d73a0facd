//! The front doors: each transport decodes a call, classifies it once into a
//! [`crate::ops::Route`], runs the shared checks (authorization, throttle, audit,
//! metrics) through their transport-independent functions, calls [`crate::kms::Kms`],
//! and encodes the result or the error in its own wire form.
//!
//! - [`grpc`]: tonic services for `kms.v1.CryptoService` and
//!   `kms.v1.KeyManagementService`, with the tower layers around them.
//! - [`https`]: the official SDKs' protocol: `POST /` with `x-kms-apiname`, signed
//!   with a client key, protobuf bodies and `Error` bodies.
//! - [`calls`]: the data plane's message → core → message steps both share, and the
//!   one list both generate their handlers from.

pub mod calls;
pub mod grpc;
pub mod https;

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
