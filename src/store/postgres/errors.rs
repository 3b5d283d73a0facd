//! Which PostgreSQL failures mean "unavailable, try again later", which mean "another
//! transaction got in the way, retry now", and which are plain backend failures.

use crate::store::StoreError;

/// SQLSTATE classes and codes of a server that is going away, restarting, refusing
/// connections (any failure to obtain one is an outage, never an internal error)
/// or cancelling our statement (statement_timeout, or an operator): the
/// database is (for now) not serving us. `08` is the connection exception class.
fn unavailable_state(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "57P01" // admin_shutdown (pg_terminate_backend, a fast shutdown)
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now (starting up, in recovery)
                | "57014" // query_canceled (statement_timeout)
                | "53300" // too_many_connections
                | "25006" // read_only_sql_transaction (a standby after failover)
                // object_not_in_prerequisite_state: what connecting to a database that
                // refuses connections (ALTER DATABASE … ALLOW_CONNECTIONS false) answers;
                // kmsd's own statements raise it for nothing else.
                | "55000"
        )
}

/// Serialization failure and deadlock: the transaction lost a race and retrying it
/// as a whole is correct.
fn retryable_state(code: &str) -> bool {
    matches!(code, "40001" | "40P01")
}

/// The SQLSTATE of a database error.
pub(super) fn sql_state(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// A transaction that lost a race (serialization failure, deadlock), kept as the
/// source of a [`StoreError::Backend`] so the retry loop can recognise it.
#[derive(Debug, thiserror::Error)]
#[error("the transaction lost a race with another (retryable): {0}")]
pub(super) struct LostRace(#[source] pub sqlx::Error);

/// Whether `err` is a transaction that lost a race and may be retried whole.
pub(super) fn is_lost_race(err: &StoreError) -> bool {
    matches!(err, StoreError::Backend { source, .. } if source.is::<LostRace>())
}

/// Classifies a driver error met while doing `context`.
pub(super) fn classify(context: &'static str, err: sqlx::Error) -> StoreError {
    let unavailable = match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(_) => {
            let code = sql_state(&err).unwrap_or_default();
            if retryable_state(&code) {
                return StoreError::backend(context, LostRace(err));
            }
            unavailable_state(&code)
        }
        _ => false,
    };
    if unavailable {
        StoreError::unavailable(context, err)
    } else {
        StoreError::backend(context, err)
    }
}

/// A closure for `map_err`: [`classify`] with `context`.
pub(super) fn sql(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| classify(context, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_unavailable_and_races_retryable() {
        assert!(matches!(
            classify("reading", sqlx::Error::PoolTimedOut),
            StoreError::Unavailable { .. }
        ));
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(matches!(
            classify("reading", io),
            StoreError::Unavailable { .. }
        ));
        for code in ["57P01", "08006", "57014", "53300", "55000"] {
            assert!(unavailable_state(code), "{code}");
        }
        for code in ["40001", "40P01"] {
            assert!(retryable_state(code) && !unavailable_state(code), "{code}");
        }
        assert!(!unavailable_state("23505") && !retryable_state("23505"));
        let decode = sqlx::Error::Decode("bad".into());
        let err = classify("reading", decode);
        assert!(matches!(err, StoreError::Backend { .. }) && !is_lost_race(&err));
    }
}
