//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` a
//! caller sends, and the one kmsd answers with.
//!
//! ```text
//! traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
//!              ^^ ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ ^^^^^^^^^^^^^^^^ ^^
//!         version trace ID (16 bytes)    parent span ID (8 bytes) flags
//! ```
//!
//! Each call gets a [`TraceContext`]: under the caller's trace ID when its
//! `traceparent` parses, with the caller's span as parent; else under a fresh trace ID.
//! Either way kmsd's span has a fresh span ID. The call's tracing span, its log lines
//! and its audit record carry the trace ID (so an operator can join the caller's trace
//! with kmsd's audit), and the response's `traceparent` names kmsd's span, so a caller
//! that sent none learns the trace kmsd opened.
//!
//! Parsing is strict, as the spec asks: lowercase hex only, non-zero IDs, version `ff`
//! refused; a version above `00` is read by its first four fields. A header that does
//! not parse is ignored: the call starts a trace of its own. `tracestate` is ignored
//! (kmsd calls no one downstream, and records no vendor state).
//!
//! Nothing is exported: there is no OTLP exporter (the opentelemetry crates would
//! double the dependency tree for a feature few deployments would turn on), but the
//! span carries `trace_id`, `span_id` and `parent_span_id`, which is what an exporter
//! would need.

use std::fmt;

/// The header (HTTP) and metadata key (gRPC) that carries the trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The length of a version `00` `traceparent`, and the least of any version.
pub const TRACEPARENT_LEN: usize = 55;

/// Random bytes a [`TraceContext`] is made from: a trace ID's 16 and a span ID's 8.
const RANDOM_LEN: usize = 24;

/// The trace flag that says the caller may have recorded its span.
const SAMPLED: u8 = 0x01;

/// A trace ID: 16 bytes, never all zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// A span ID: 8 bytes, never all zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

/// A `traceparent` as a caller sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace the call belongs to.
    pub trace_id: TraceId,
    /// The caller's span: the parent of kmsd's.
    pub parent_id: SpanId,
    /// The trace flags as sent.
    pub flags: u8,
}

/// The trace context of one call: its trace, kmsd's span, the caller's span if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// The caller's trace ID, or a fresh one.
    pub trace_id: TraceId,
    /// kmsd's span for the call: always fresh.
    pub span_id: SpanId,
    /// The caller's span, when it sent a valid `traceparent`.
    pub parent_id: Option<SpanId>,
    /// The flags answered: the caller's sampled flag, else none.
    pub flags: u8,
}

// === impl TraceContext ===

impl TraceContext {
    /// The context of a call that presented `traceparent` (the header's value, if it
    /// sent exactly one): a child of the caller's span when it parses, else a fresh
    /// trace.
    pub fn start(traceparent: Option<&[u8]>) -> Self {
        Self::start_from(traceparent, random_bytes())
    }

    /// [`Self::start`] with the 24 random bytes a fresh trace ID and span ID are taken
    /// from.
    fn start_from(traceparent: Option<&[u8]>, random: [u8; RANDOM_LEN]) -> Self {
        let span_id = SpanId(non_zero(random[16..].try_into().expect("8 bytes")));
        match traceparent.and_then(parse) {
            Some(parent) => Self {
                trace_id: parent.trace_id,
                span_id,
                parent_id: Some(parent.parent_id),
                flags: parent.flags & SAMPLED,
            },
            None => Self {
                trace_id: TraceId(non_zero(random[..16].try_into().expect("16 bytes"))),
                span_id,
                parent_id: None,
                flags: 0,
            },
        }
    }

    /// The `traceparent` that names kmsd's span, for the response.
    pub fn traceparent(&self) -> String {
        self.encode_traceparent(&mut [0; TRACEPARENT_LEN])
            .to_owned()
    }

    /// [`Self::traceparent`], written into `buffer`, without allocating.
    pub fn encode_traceparent<'b>(&self, buffer: &'b mut [u8; TRACEPARENT_LEN]) -> &'b str {
        buffer[..3].copy_from_slice(b"00-");
        hex_into(&self.trace_id.0, &mut buffer[3..35]);
        buffer[35] = b'-';
        hex_into(&self.span_id.0, &mut buffer[36..52]);
        buffer[52] = b'-';
        hex_into(&[self.flags], &mut buffer[53..55]);
        std::str::from_utf8(buffer).unwrap_or_default()
    }
}

/// 24 random bytes: a fresh trace ID and span ID. Public random values
/// ([`crate::crypto::nonce`]), as the request ID's are; should they fail, from a v4
/// UUID (whose generator panics rather than repeat itself).
fn random_bytes() -> [u8; RANDOM_LEN] {
    let mut bytes = [0; RANDOM_LEN];
    if crate::crypto::nonce::fill(&mut bytes).is_err() {
        bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        bytes[16..].copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
    }
    bytes
}

/// `bytes`, or (in the 2^-64 case where they are all zero, which the spec forbids) 1.
fn non_zero<const N: usize>(mut bytes: [u8; N]) -> [u8; N] {
    if bytes.iter().all(|b| *b == 0) {
        bytes[N - 1] = 1;
    }
    bytes
}

// === parsing ===

/// Parses a `traceparent` value; `None` when it is not one the spec accepts:
///
/// - shorter than 55 characters; version `00` longer than 55; a later version longer
///   than 55 whose 56th character is not `-`;
/// - a version that is not two lowercase hex digits, or is `ff`;
/// - a trace ID, parent ID or flags field that is not lowercase hex of its length, or
///   fields not separated by `-`;
/// - an all-zero trace ID or parent ID.
pub fn parse(value: &[u8]) -> Option<TraceParent> {
    if value.len() < TRACEPARENT_LEN {
        return None;
    }
    let version: [u8; 1] = hex(&value[0..2])?;
    match version[0] {
        0xff => return None,
        0x00 if value.len() != TRACEPARENT_LEN => return None,
        // A later version may append fields, after a dash.
        _ if value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-' => return None,
        _ => {}
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace_id: [u8; 16] = hex(&value[3..35])?;
    let parent_id: [u8; 8] = hex(&value[36..52])?;
    let flags: [u8; 1] = hex(&value[53..55])?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(TraceParent {
        trace_id: TraceId(trace_id),
        parent_id: SpanId(parent_id),
        flags: flags[0],
    })
}

/// `N` bytes from exactly `2N` lowercase hex digits.
fn hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            _ => None,
        }
    }
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// Lowercase hex in one write (a `write!` per byte cost ~4x as much, per call).
/// Writes `bytes` as lowercase hex into the start of `out` (twice as long) and returns
/// that text.
fn hex_into<'o>(bytes: &[u8], out: &'o mut [u8]) -> &'o str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let out = &mut out[..2 * bytes.len()];
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
    // Hex digits are ASCII.
    std::str::from_utf8(out).unwrap_or_default()
}

fn write_hex(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut out = [0; 32];
    f.write_str(hex_into(bytes, &mut out))
}

impl TraceId {
    /// The 32 hex digits, written into `buffer`, without allocating.
    pub fn encode<'b>(&self, buffer: &'b mut [u8; 32]) -> &'b str {
        hex_into(&self.0, buffer)
    }
}

impl SpanId {
    /// The 16 hex digits, written into `buffer`, without allocating.
    pub fn encode<'b>(&self, buffer: &'b mut [u8; 16]) -> &'b str {
        hex_into(&self.0, buffer)
    }
}

impl fmt::Display for TraceId {
    /// 32 lowercase hex digits, as in `traceparent`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(&self.0, f)
    }
}

impl fmt::Display for SpanId {
    /// 16 lowercase hex digits, as in `traceparent`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's example.
    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parses(value: &str) -> Option<TraceParent> {
        parse(value.as_bytes())
    }

    #[test]
    fn the_specs_example_parses_and_formats_back() {
        let parent = parses(VALID).unwrap();
        assert_eq!(
            parent.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.parent_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(parent.flags, 0x01);
        let unsampled = VALID.replace("-01", "-00");
        assert_eq!(parses(&unsampled).unwrap().flags, 0);
    }

    #[test]
    fn malformed_values_are_refused() {
        let refused = [
            "",
            "00",
            &VALID[..54],                                           // short
            &format!("{VALID}0"),                                   // 00 too long
            &format!("{VALID}-00"),                                 // 00 with more fields
            &VALID.replace("4bf9", "4BF9"),                         // uppercase trace ID
            &VALID.replace("00f067aa0ba902b7", "00F067AA0BA902B7"), // uppercase parent ID
            &VALID.replace("-01", "-0A"),                           // uppercase flags
            &VALID.replace("-01", "-0g"),                           // not hex
            &VALID.replace("4bf92f35", "4bf92f3z"),                 // not hex
            &VALID.replacen('-', "_", 1),                           // separators
            &VALID.replace("-00f067", "_00f067"),
            &VALID.replace("b7-01", "b7_01"),
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", // misplaced dash
            " 0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // uppercase version
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace ID
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent ID
        ];
        for value in refused {
            assert_eq!(parses(value), None, "{value:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_first_four_fields() {
        let later = VALID.replacen("00", "cc", 1);
        let parent = parses(&later).unwrap();
        assert_eq!(parent, parses(VALID).unwrap());
        assert_eq!(parses(&format!("{later}-what-comes-next")), Some(parent));
        assert_eq!(
            parses(&format!("{later}x-more")),
            None,
            "no dash after flags"
        );
        assert_eq!(parses(&later[..54]), None, "short");
        let zero = "cc-00000000000000000000000000000000-00f067aa0ba902b7-01";
        assert_eq!(parses(zero), None);
    }

    #[test]
    fn a_call_is_a_child_of_the_callers_span_with_a_span_of_its_own() {
        let parent = parses(VALID).unwrap();
        let context = TraceContext::start(Some(VALID.as_bytes()));
        assert_eq!(context.trace_id, parent.trace_id);
        assert_eq!(context.parent_id, Some(parent.parent_id));
        assert_ne!(context.span_id, parent.parent_id);
        assert_ne!(
            TraceContext::start(Some(VALID.as_bytes())).span_id,
            context.span_id
        );
        let answer = context.traceparent();
        assert_eq!(
            answer,
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", context.span_id)
        );
        assert_eq!(parse(answer.as_bytes()).unwrap().parent_id, context.span_id);
        // Only the sampled flag is answered (the rest is the caller's version's).
        let flagged = VALID.replace("-01", "-ff").replacen("00", "01", 1);
        assert_eq!(TraceContext::start(Some(flagged.as_bytes())).flags, 0x01);
    }

    #[test]
    fn without_a_valid_parent_a_call_starts_a_fresh_trace() {
        for sent in [None, Some(&b"00-garbage"[..])] {
            let a = TraceContext::start(sent);
            let b = TraceContext::start(sent);
            assert_eq!(a.parent_id, None);
            assert_ne!(a.trace_id, b.trace_id);
            let answer = parse(a.traceparent().as_bytes()).unwrap();
            assert_eq!((answer.trace_id, answer.parent_id), (a.trace_id, a.span_id));
            assert_eq!(answer.flags, 0);
        }
    }
}
