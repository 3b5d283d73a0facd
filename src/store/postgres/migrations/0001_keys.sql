-- 0001: keys, their versions, aliases and metadata; change announcements.
--
-- Text keys sort bytewise (COLLATE "C") whatever the database's collation, as the
-- list calls' pages (ordered by name, strictly after a name) assume. Times are Unix
-- milliseconds. Versions and aliases go with their key (ON DELETE CASCADE), so one
-- DELETE destroys a key whole.

CREATE TABLE kmsd_keys (
    key_id                 text COLLATE "C" PRIMARY KEY,
    key_spec               text NOT NULL,
    key_usage              text NOT NULL,
    state                  text NOT NULL
        CHECK (state IN ('Enabled', 'Disabled', 'PendingDeletion')),
    description            text NOT NULL,
    created_at_ms          bigint NOT NULL,
    initial_version_id     text NOT NULL,
    primary_version_id     text NOT NULL,
    rotation_interval_secs bigint,
    last_rotation_ms       bigint NOT NULL,
    delete_at_ms           bigint,
    revision               bigint NOT NULL
);

CREATE TABLE kmsd_versions (
    version_id    text COLLATE "C" PRIMARY KEY,
    key_id        text COLLATE "C" NOT NULL REFERENCES kmsd_keys (key_id) ON DELETE CASCADE,
    created_at_ms bigint NOT NULL,
    -- The material sealed under the root key (AES-256-GCM): never plaintext here.
    iv            bytea NOT NULL,
    ciphertext    bytea NOT NULL
);
CREATE INDEX kmsd_versions_of_key ON kmsd_versions (key_id, created_at_ms, version_id);

CREATE TABLE kmsd_aliases (
    alias_name    text COLLATE "C" PRIMARY KEY,
    key_id        text COLLATE "C" NOT NULL REFERENCES kmsd_keys (key_id) ON DELETE CASCADE,
    created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL
);
CREATE INDEX kmsd_aliases_of_key ON kmsd_aliases (key_id, alias_name);

CREATE TABLE kmsd_meta (
    name  text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

-- Every committed change to a key or an alias is announced on the channel
-- kmsd_changes (NOTIFY is delivered at commit, never for a rolled-back change), so
-- every replica drops what it cached at once instead of serving it until its TTL ends.
-- Payloads: `key:<id>`, `destroyed:<id>`, `alias:<name>`.
CREATE FUNCTION kmsd_announce_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'kmsd_keys' THEN
        IF TG_OP = 'DELETE' THEN
            PERFORM pg_notify('kmsd_changes', 'destroyed:' || OLD.key_id);
        ELSE
            PERFORM pg_notify('kmsd_changes', 'key:' || NEW.key_id);
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('kmsd_changes', 'alias:' || OLD.alias_name);
    ELSE
        PERFORM pg_notify('kmsd_changes', 'alias:' || NEW.alias_name);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER kmsd_keys_changed AFTER INSERT OR UPDATE OR DELETE ON kmsd_keys
    FOR EACH ROW EXECUTE FUNCTION kmsd_announce_change();
CREATE TRIGGER kmsd_aliases_changed AFTER INSERT OR UPDATE OR DELETE ON kmsd_aliases
    FOR EACH ROW EXECUTE FUNCTION kmsd_announce_change();
