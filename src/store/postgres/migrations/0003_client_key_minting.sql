-- 0003: who minted each client key, and under which access-control configuration
-- ('open': no --auth-config; 'policy': by the principal minted_by; 'readmitted': by
-- the operator, offline). Keys of 0002 were minted before kmsd recorded it: '' is
-- "unknown", refused under a policy until re-admitted, like 'open'.

ALTER TABLE kmsd_client_keys
    ADD COLUMN minted_by    text NOT NULL DEFAULT '',
    ADD COLUMN minted_under text NOT NULL DEFAULT '';
