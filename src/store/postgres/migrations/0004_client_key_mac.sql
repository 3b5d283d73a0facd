-- 0004: each client-key row carries an HMAC-SHA256 over its fields under a key derived
-- from the root key (keys::record_mac), so a row written or changed by anyone who can
-- write to the database but does not hold the root key is refused. Rows of earlier
-- versions have none ('') and are refused until re-admitted (kmsd readmit-client-key).

ALTER TABLE kmsd_client_keys
    ADD COLUMN mac bytea NOT NULL DEFAULT '\x'::bytea;
