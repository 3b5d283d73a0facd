//! [`AuthLayer`]: finds the caller's principal and checks the operation grant.
//!
//! The principal comes from `authorization: Bearer <token>` (hashed, then compared in
//! constant time with every principal's hash) or, when there is no such header, from
//! the verified client certificate of an mTLS connection (its URI SANs, then its
//! subject, against the principals' `spiffe_id`). A bearer header that does not verify
//! is rejected even if a certificate would: a caller that sends a token means it.
//!
//! The layer stores the resulting [`Access`] in the request's extensions, and the
//! principal's name in the call's [`AuditNote`] if there is one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{HeaderMap, Request, Response};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_layer::Layer;
use tower_service::Service;

use super::policy::{AuthPolicy, Principal};
use super::{Access, Route, route};
use crate::audit::AuditNote;
use crate::error::KmsError;
use crate::request_id::RequestId;

/// Tower layer of access control; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct AuthLayer {
    policy: Option<Arc<AuthPolicy>>,
}

impl AuthLayer {
    /// Access control by `policy`; `None` lets every call in with [`Access::Open`].
    pub fn new(policy: Option<AuthPolicy>) -> Self {
        Self {
            policy: policy.map(Arc::new),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    policy: Option<Arc<AuthPolicy>>,
}

/// The token of an `authorization` header value `Bearer <token>` (scheme in any case).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let split = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// The identities a client certificate (DER) offers: its URI SANs, then its subject as
/// `CN=..., O=...`. Empty if it does not parse (it was verified by rustls, so that
/// would be a certificate we cannot read, not one we should trust by another route).
pub fn certificate_identities(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut identities = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = name {
                identities.push((*uri).to_owned());
            }
        }
    }
    identities.push(cert.subject().to_string());
    identities
}

/// The principal of a request, or [`KmsError::Unauthenticated`].
fn authenticate(
    policy: &AuthPolicy,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> Result<Arc<Principal>, KmsError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    if let Some(value) = values.next() {
        if values.next().is_some() {
            return Err(KmsError::Unauthenticated);
        }
        let token = bearer_token(value.as_bytes()).ok_or(KmsError::Unauthenticated)?;
        return policy.by_token(token).ok_or(KmsError::Unauthenticated);
    }
    let leaf = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .and_then(|certs| certs.first().map(|cert| cert.as_ref().to_vec()));
    match leaf {
        Some(der) => {
            let identities = certificate_identities(&der);
            policy
                .by_certificate_identity(identities.iter().map(String::as_str))
                .ok_or(KmsError::Unauthenticated)
        }
        None => Err(KmsError::Unauthenticated),
    }
}

/// Decides a call: the [`Access`] it runs with, or why it is refused.
fn decide<B>(policy: Option<&AuthPolicy>, request: &Request<B>) -> Result<Access, KmsError> {
    let Some(policy) = policy else {
        return Ok(Access::Open);
    };
    let operation = match route(request.uri().path()) {
        Route::Exempt => return Ok(Access::Open),
        Route::Guarded(operation) => operation,
    };
    let principal = authenticate(policy, request.headers(), request.extensions())?;
    if let Some(note) = AuditNote::from_extensions(request.extensions()) {
        note.set_principal(principal.name());
    }
    if !principal.allows_operation(operation) {
        tracing::info!(
            principal = principal.name(),
            operation,
            "operation not granted"
        );
        return Err(KmsError::PermissionDenied);
    }
    Ok(Access::Principal(principal))
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, ResB> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Future: Send + 'static,
    ResB: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        match decide(self.policy.as_deref(), &request) {
            Ok(access) => {
                request.extensions_mut().insert(access);
                Box::pin(self.inner.call(request))
            }
            Err(err) => {
                let request_id = RequestId::from_extensions(request.extensions());
                tracing::debug!(%request_id, code = err.error_code(), "call refused");
                let response = err.to_status(&request_id).into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_parse_strictly() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b""), None);
    }

    #[test]
    fn certificate_identities_are_uri_sans_then_subject() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://cluster.local/ns/a/sa/b").unwrap(),
        )];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "payments");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            certificate_identities(cert.der()),
            vec![
                "spiffe://cluster.local/ns/a/sa/b".to_owned(),
                "CN=payments".to_owned()
            ]
        );
        assert!(certificate_identities(b"not a certificate").is_empty());
    }
}
