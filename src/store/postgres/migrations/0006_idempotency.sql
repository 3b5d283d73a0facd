-- 0006: idempotency tokens. One row per token a caller sent with a creation, scoped to
-- the operation and the caller's principal, written in the same transaction as the
-- object it made: the primary key lets one of two replicas racing on a token commit,
-- and the other read the winner's row. request_mac is an HMAC of the request (never
-- the request: it may carry a secret's value). Rows expire (expires_at_ms) and are
-- purged by the maintenance pass. Older binaries never read this table, so they keep
-- working (they just ignore tokens).

CREATE TABLE kmsd_idempotency (
    operation     text COLLATE "C" NOT NULL,
    principal     text COLLATE "C" NOT NULL,
    token         text COLLATE "C" NOT NULL,
    request_mac   bytea NOT NULL,
    outcome       text NOT NULL,
    created_at_ms bigint NOT NULL,
    expires_at_ms bigint NOT NULL,
    PRIMARY KEY (operation, principal, token)
);

CREATE INDEX kmsd_idempotency_expiry ON kmsd_idempotency (expires_at_ms);
