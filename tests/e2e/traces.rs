//! W3C trace context across services: a caller's `traceparent` (gRPC metadata, or the
//! gateway's header) puts kmsd's span of the call in the caller's trace. The response's
//! `traceparent` names kmsd's span under the caller's trace ID, and the call's audit
//! record carries the same trace ID and span ID; without a valid `traceparent`, kmsd
//! starts a fresh trace and says which.

use kmsd::audit::AuditRecord;
use kmsd::trace_context::{TRACEPARENT_HEADER, TraceParent, parse};

use crate::gateway::{GENERATE, client_key, ec_request, exchange, gateway_server, signed_headers};
use crate::support::pb::*;
use crate::support::security::audit_records;
use crate::support::*;

/// A caller's span in a caller's trace.
const SENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn answered(value: Option<&str>) -> TraceParent {
    parse(value.expect("a traceparent answered").as_bytes()).expect("a valid traceparent")
}

/// The record of the call with `request_id`.
async fn record_of(server: &TestServer, audit: &std::path::Path, request_id: &str) -> AuditRecord {
    assert!(server.server.kms().audit().unwrap().flush().await);
    audit_records(audit)
        .into_iter()
        .find(|record| record.request_id == request_id)
        .unwrap_or_else(|| panic!("no audit record of {request_id}"))
}

/// The response's trace and its audit record agree: the trace ID, and kmsd's span.
fn assert_joined(answer: &TraceParent, record: &AuditRecord) {
    assert_eq!(record.trace_id, Some(answer.trace_id.to_string()));
    assert_eq!(record.span_id, Some(answer.parent_id.to_string()));
}

fn traced<T>(message: T, traceparent: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = traceparent {
        request
            .metadata_mut()
            .insert(TRACEPARENT_HEADER, value.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn the_callers_trace_id_reaches_the_audit_record_and_the_answer_over_both_transports() {
    let files = temp_dir();
    let audit = files.path().join("audit.jsonl");
    let server = gateway_server(|config| config.audit_log = Some(audit.clone())).await;
    let sent = parse(SENT.as_bytes()).unwrap();
    let mut management = server.management();
    let mut fresh = Vec::new();

    // gRPC: a child of the caller's span; without one (or an invalid one), a new trace.
    for (traceparent, joined) in [
        (Some(SENT), true),
        (None, false),
        (
            Some("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"),
            false,
        ),
    ] {
        let response = management
            .create_key(traced(CreateKeyRequest::default(), traceparent))
            .await
            .unwrap();
        let metadata = response.metadata();
        let answer = answered(
            metadata
                .get(TRACEPARENT_HEADER)
                .map(|v| v.to_str().unwrap()),
        );
        assert_eq!(answer.trace_id == sent.trace_id, joined, "{traceparent:?}");
        assert_ne!(
            answer.parent_id, sent.parent_id,
            "kmsd's span, not the caller's"
        );
        if !joined {
            fresh.push(answer.trace_id);
        }
        let request_id = metadata.get("x-kms-request-id").unwrap().to_str().unwrap();
        assert_joined(&answer, &record_of(&server, &audit, request_id).await);
    }
    // A refusal answers it too.
    let refused = server
        .crypto()
        .decrypt(traced(
            DecryptRequest {
                key_id: "key-that-does-not-exist".into(),
                ..Default::default()
            },
            Some(SENT),
        ))
        .await
        .unwrap_err();
    let answer = answered(
        refused
            .metadata()
            .get(TRACEPARENT_HEADER)
            .map(|v| v.to_str().unwrap()),
    );
    assert_eq!(answer.trace_id, sent.trace_id);

    // The gateway: the traceparent header is not signed, and the signature still holds.
    let key_id = create_key(&server).await;
    let key = client_key(&server, "").await;
    let body = ec_request(&key_id);
    for traceparent in [Some(SENT), None] {
        let mut headers = signed_headers(&key, GENERATE, &body, server.clock_now());
        if let Some(value) = traceparent {
            headers.push((TRACEPARENT_HEADER.to_owned(), value.to_owned()));
        }
        let (status, head, _) = exchange(&server, &headers, &body).await;
        assert_eq!(status, 200);
        let header = |name: &str| {
            head.iter()
                .find(|(n, _)| n == name)
                .map(|(_, value)| value.as_str())
        };
        let answer = answered(header(TRACEPARENT_HEADER));
        assert_eq!(
            answer.trace_id == sent.trace_id,
            traceparent.is_some(),
            "{traceparent:?}"
        );
        if traceparent.is_none() {
            fresh.push(answer.trace_id);
        }
        let record = record_of(&server, &audit, header("x-kms-request-id").unwrap()).await;
        assert_eq!(record.transport.as_deref(), Some("https"));
        assert_joined(&answer, &record);
    }
    let distinct: std::collections::HashSet<_> = fresh.iter().collect();
    assert_eq!(distinct.len(), 3, "each untraced call starts its own trace");
}
