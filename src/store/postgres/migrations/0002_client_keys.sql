-- 0002: client keys of the HTTPS gateway (the official SDKs' credentials). Only the
-- public key is kept (PKCS#1 RSAPublicKey DER); the private key went to the caller.
-- A client key names a principal, not a key: no foreign key, no change announcement
-- (every request reads its client key from here, so there is nothing to invalidate).

CREATE TABLE kmsd_client_keys (
    client_key_id  text COLLATE "C" PRIMARY KEY,
    principal      text NOT NULL,
    public_key_der bytea NOT NULL,
    not_before_ms  bigint NOT NULL,
    not_after_ms   bigint NOT NULL,
    created_at_ms  bigint NOT NULL
);
