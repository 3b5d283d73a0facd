//! One call, as every layer and the core see it, whatever transport carried it.
//!
//! - [`Caller`]: who is calling (their [`Access`]), the call's [`RequestId`], and its
//!   [`CallNote`]. Every operation of [`crate::kms::Kms`] takes one.
//! - [`CallNote`]: what the call touched and how it ended, filled in as it goes (the
//!   principal by authentication, key, version and spec by the core, the [`Outcome`]
//!   by whoever answers), and read once at the end by audit and metrics. It has no
//!   field that could hold a secret.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::auth::{Access, AuthMethod};
use crate::error::Outcome;
use crate::keys::ids::ALIAS_PREFIX;
use crate::request_id::RequestId;
use crate::trace_context::TraceContext;

/// The longest value taken from a request into a note (a `KeyId` as sent).
pub const MAX_NOTE_FIELD_LEN: usize = 256;

/// Who is calling, and the call's ID and note.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// The call's request ID.
    pub request_id: RequestId,
    /// What the caller may touch.
    pub access: Access,
    /// What the call did, for audit and metrics.
    pub note: CallNote,
    /// The key version the caller named in its `x-kms-migrationkeyversionid` header
    /// (the transfer clients of the classic API do): the version a call opens or seals
    /// with, which must be a version of the key it uses. Bounded, not yet checked.
    pub migration_version: Option<String>,
}

impl Caller {
    /// A caller with full access and a detached note: the server's own work and tests.
    pub fn internal() -> Self {
        Self::default()
    }

    /// A call that needs no principal (health, reflection): open access.
    pub fn open(request_id: RequestId, note: CallNote) -> Self {
        Self {
            request_id,
            access: Access::Open,
            note,
            migration_version: None,
        }
    }
}

/// The front door a call came through: a label of metrics and audit records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Transport {
    /// gRPC (tonic).
    #[default]
    Grpc,
    /// The official SDKs' HTTPS protocol.
    Https,
}

impl Transport {
    /// The label value: `grpc` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Https => "https",
        }
    }
}

/// What a [`CallNote`] holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoteFields {
    /// The transport that carried the call, once its edge said.
    pub transport: Option<Transport>,
    /// The call's W3C trace context, once its edge read it.
    pub trace: Option<TraceContext>,
    /// The principal's name.
    pub principal: Option<String>,
    /// The key: as sent, then as resolved.
    pub key_id: Option<String>,
    /// The key version used or named.
    pub key_version_id: Option<String>,
    /// The key pair spec of a Generate call.
    pub key_pair_spec: Option<String>,
    /// The client key that signed a gateway call (set once its signature verified).
    pub client_key_id: Option<String>,
    /// The principal a call acts on, when not the caller: CreateClientKey's principal.
    pub target_principal: Option<String>,
    /// The secret a secret operation names.
    pub secret_name: Option<String>,
    /// The secret version it read or wrote.
    pub secret_version_id: Option<String>,
    /// How the call ended, once it has.
    pub outcome: Option<Outcome>,
    /// The address the call came from (its connection's peer).
    pub peer: Option<SocketAddr>,
    /// How the caller authenticated, once it has.
    pub auth: Option<AuthMethod>,
    /// The alias the call named its key by, as sent (the first `alias/…` key noted).
    pub key_alias: Option<String>,
}

/// Setters of the note's text fields: each records a bounded copy, and an empty value
/// leaves the note unchanged.
macro_rules! text_setters {
    ($( $(#[$doc:meta])* $setter:ident => $field:ident; )*) => {
        impl CallNote {
            $(
                $(#[$doc])*
                pub fn $setter(&self, value: &str) {
                    if let Some(value) = bounded(value) {
                        self.update(|f| f.$field = Some(value));
                    }
                }
            )*
        }
    };
}

text_setters! {
    /// Records the key version used or named.
    set_key_version_id => key_version_id;
    /// Records the key pair spec of a Generate call.
    set_key_pair_spec => key_pair_spec;
    /// Records the client key whose signature authenticated the call.
    set_client_key_id => client_key_id;
    /// Records the principal the call acts on for someone else.
    set_target_principal => target_principal;
    /// Records the secret the call names.
    set_secret_name => secret_name;
    /// Records the secret version the call read or wrote.
    set_secret_version_id => secret_version_id;
}

/// The per-call note; see the module docs. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct CallNote(Arc<NoteInner>);

#[derive(Debug, Default)]
struct NoteInner {
    fields: Mutex<NoteFields>,
    /// Set by [`CallNote::defer_outcome`]: the call ends after its answer's head.
    deferred: Mutex<Option<oneshot::Receiver<Outcome>>>,
}

/// How a call whose answer outlives its handler (a streamed Backup) ended, to be told
/// once it has: [`Self::deliver`], or dropped untold (`CANCELLED`).
#[derive(Debug)]
pub struct DeferredOutcome(oneshot::Sender<Outcome>);

impl DeferredOutcome {
    /// Tells the call's record how it ended.
    pub fn deliver(self, outcome: Outcome) {
        let _ = self.0.send(outcome);
    }
}

fn bounded(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    // At most MAX_NOTE_FIELD_LEN characters: a value that short in bytes is copied
    // whole (the usual case), a longer one cut at its last whole character.
    let end = if value.len() <= MAX_NOTE_FIELD_LEN {
        value.len()
    } else {
        value
            .char_indices()
            .nth(MAX_NOTE_FIELD_LEN)
            .map_or(value.len(), |(at, _)| at)
    };
    Some(value[..end].to_owned())
}

impl CallNote {
    fn update(&self, apply: impl FnOnce(&mut NoteFields)) {
        let mut fields = self.lock();
        apply(&mut fields);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NoteFields> {
        self.0.fields.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Says the call ends later than its handler's answer (a stream still to be
    /// delivered): its audit record waits for the returned outcome instead of being
    /// written when the answer's head leaves.
    pub fn defer_outcome(&self) -> DeferredOutcome {
        let (tx, rx) = oneshot::channel();
        *self
            .0
            .deferred
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(rx);
        DeferredOutcome(tx)
    }

    /// The outcome to wait for, if the call deferred it ([`Self::defer_outcome`]).
    pub fn take_deferred(&self) -> Option<oneshot::Receiver<Outcome>> {
        self.0
            .deferred
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Records the key (as sent, or resolved); a key named by alias also records the
    /// alias, once.
    pub fn set_key_id(&self, value: &str) {
        let Some(value) = bounded(value) else {
            return;
        };
        self.update(|f| {
            if f.key_alias.is_none() && value.starts_with(ALIAS_PREFIX) {
                f.key_alias = Some(value.clone());
            }
            f.key_id = Some(value);
        });
    }

    /// Records the address the call came from.
    pub fn set_peer(&self, peer: SocketAddr) {
        self.update(|f| f.peer = Some(peer));
    }

    /// Records how the caller authenticated.
    pub fn set_auth(&self, method: AuthMethod) {
        self.update(|f| f.auth = Some(method));
    }

    /// Records the transport that carried the call.
    pub fn set_transport(&self, transport: Transport) {
        self.update(|f| f.transport = Some(transport));
    }

    /// Records the call's trace context.
    pub fn set_trace(&self, trace: TraceContext) {
        self.update(|f| f.trace = Some(trace));
    }

    /// Records the principal's name.
    pub fn set_principal(&self, name: &str) {
        self.update(|f| f.principal = bounded(name));
    }

    /// Records how the call ended. The first outcome recorded stands.
    pub fn set_outcome(&self, outcome: Outcome) {
        self.update(|f| {
            f.outcome.get_or_insert(outcome);
        });
    }

    /// The transport the call came through, once its edge said.
    pub fn transport(&self) -> Option<Transport> {
        self.lock().transport
    }

    /// The outcome recorded so far.
    pub fn outcome(&self) -> Option<Outcome> {
        self.lock().outcome
    }

    /// The key version a call that succeeded used, if it used one (what the
    /// `x-kms-migrationkeyversionid` answer names).
    pub fn version_used(&self) -> Option<String> {
        let fields = self.lock();
        match fields.outcome {
            Some(outcome) if outcome == Outcome::OK => fields.key_version_id.clone(),
            _ => None,
        }
    }

    /// Everything noted so far.
    pub fn fields(&self) -> NoteFields {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{KmsError, StatusCode};

    #[test]
    fn notes_bound_what_they_keep() {
        let note = CallNote::default();
        note.set_key_id(&"k".repeat(10_000));
        note.set_key_id("");
        note.set_key_pair_spec("EC_P256");
        let fields = note.fields();
        assert_eq!(fields.key_id.unwrap().len(), MAX_NOTE_FIELD_LEN);
        assert_eq!(fields.key_pair_spec.as_deref(), Some("EC_P256"));
        assert_eq!(fields.key_alias, None);
        // Characters, not bytes: a multi-byte value keeps 256 whole characters.
        note.set_secret_name(&"é".repeat(300));
        let kept = note.fields().secret_name.unwrap();
        assert_eq!(kept.chars().count(), MAX_NOTE_FIELD_LEN);
        assert!(kept.chars().all(|c| c == 'é'));
        note.set_secret_name(&"é".repeat(100));
        assert_eq!(note.fields().secret_name.unwrap(), "é".repeat(100));
    }

    #[test]
    fn a_key_named_by_alias_keeps_the_alias_as_sent() {
        let note = CallNote::default();
        note.set_key_id("alias/payments");
        note.set_key_id("key-0123");
        let fields = note.fields();
        assert_eq!(fields.key_id.as_deref(), Some("key-0123"));
        assert_eq!(fields.key_alias.as_deref(), Some("alias/payments"));
    }

    #[test]
    fn the_first_outcome_stands() {
        let note = CallNote::default();
        assert_eq!(note.outcome(), None);
        note.set_outcome(Outcome::of_error(&KmsError::PermissionDenied));
        note.set_outcome(Outcome::OK);
        assert_eq!(
            note.outcome().map(|o| o.code),
            Some(StatusCode::PermissionDenied)
        );
    }

    #[test]
    fn clones_share_one_note() {
        let note = CallNote::default();
        note.clone().set_principal("payments");
        assert_eq!(note.fields().principal.as_deref(), Some("payments"));
    }
}
