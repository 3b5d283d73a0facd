-- 0005: secrets. One row per secret: its record (metadata, stages and versions, each
-- version's data sealed under the secret's master key: never plaintext here) as JSON,
-- written whole with a revision check as keys are. Every committed change is announced
-- on kmsd_changes as `secret:<name>`, so every replica drops its cached copy at once.

CREATE TABLE kmsd_secrets (
    secret_name text COLLATE "C" PRIMARY KEY,
    revision    bigint NOT NULL,
    record      bytea NOT NULL
);

CREATE FUNCTION kmsd_announce_secret_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('kmsd_changes', 'secret:' || OLD.secret_name);
    ELSE
        PERFORM pg_notify('kmsd_changes', 'secret:' || NEW.secret_name);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER kmsd_secrets_changed AFTER INSERT OR UPDATE OR DELETE ON kmsd_secrets
    FOR EACH ROW EXECUTE FUNCTION kmsd_announce_secret_change();
