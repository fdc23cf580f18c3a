-- Retention, legal hold and supervised destruction.
--
-- A `destroy` request is an access request of its own kind, routed by workflows.toml like
-- the others; it says why (`reason_type`: the retention period ended, or the customer asked
-- for erasure) and is used at most once (`used_at`, set by the destruction it authorized).
ALTER TABLE access_requests DROP CONSTRAINT IF EXISTS access_requests_kind_check;
ALTER TABLE access_requests
    ADD CONSTRAINT access_requests_kind_check
        CHECK (kind IN ('lookup', 'view', 'borrow', 'export', 'destroy')),
    ADD COLUMN reason_type text CHECK (reason_type IN ('retention', 'erasure')),
    ADD COLUMN used_at timestamptz,
    ADD CONSTRAINT access_requests_destroy_reason CHECK ((kind = 'destroy') = (reason_type IS NOT NULL)),
    ADD CONSTRAINT access_requests_used_only_destroy CHECK (used_at IS NULL OR kind = 'destroy');

-- Retention: counted from filing, or from the date field the category names.
ALTER TABLE categories
    ADD COLUMN retention_from text CHECK (retention_from IS NULL OR length(retention_from) BETWEEN 1 AND 64);

-- The date a retention is counted from, when a record's field holds a valid YYYY-MM-DD
-- date; NULL otherwise (the filing date is used then).
CREATE FUNCTION retention_date(t text) RETURNS date
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF t IS NULL OR t !~ '^\d{4}-\d{2}-\d{2}$' THEN
        RETURN NULL;
    END IF;
    RETURN t::date;
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$;

-- Legal holds on one record or on a whole category (and so every record filed under it or
-- below it). A hold in force has no `released_at`; released holds stay as history.
CREATE TABLE legal_holds (
    id             uuid PRIMARY KEY,
    record_id      uuid REFERENCES records (id),
    category_id    uuid REFERENCES categories (id),
    reason         text NOT NULL CHECK (length(reason) BETWEEN 3 AND 2000),
    placed_by      uuid NOT NULL REFERENCES users (id),
    placed_at      timestamptz NOT NULL DEFAULT now(),
    released_by    uuid REFERENCES users (id),
    released_at    timestamptz,
    CHECK ((record_id IS NULL) <> (category_id IS NULL)),
    CHECK ((released_at IS NULL) = (released_by IS NULL))
);
CREATE UNIQUE INDEX legal_holds_one_per_record ON legal_holds (record_id)
    WHERE released_at IS NULL AND record_id IS NOT NULL;
CREATE UNIQUE INDEX legal_holds_one_per_category ON legal_holds (category_id)
    WHERE released_at IS NULL AND category_id IS NOT NULL;

-- The destruction register: one certificate per destroyed record, written in the unit of
-- work that shreds it, never changed afterwards. It names the files by name, size and the
-- SHA-256 of their plaintext as recorded at upload; it holds no content and no key.
CREATE TABLE destructions (
    id             uuid PRIMARY KEY,
    record_id      uuid NOT NULL UNIQUE REFERENCES records (id),
    request_id     uuid NOT NULL UNIQUE REFERENCES access_requests (id),
    reference      text NOT NULL,
    title          text NOT NULL,
    category_code  text NOT NULL,
    category_path  text NOT NULL,
    filed_at       timestamptz NOT NULL,
    reason_type    text NOT NULL CHECK (reason_type IN ('retention', 'erasure')),
    purpose        text NOT NULL,
    requester_id   uuid NOT NULL REFERENCES users (id),
    requester      text NOT NULL,
    -- [{username, decided_at, comment}]
    approvers      jsonb NOT NULL,
    executor_id    uuid NOT NULL REFERENCES users (id),
    executor       text NOT NULL,
    witness_id     uuid NOT NULL REFERENCES users (id),
    witness        text NOT NULL,
    method         text NOT NULL CHECK (length(method) BETWEEN 3 AND 500),
    -- [{file_id, version, name, media_type, size, sha256, uploaded_at}]
    files          jsonb NOT NULL,
    -- names of the sensitive fields whose values were erased
    erased_fields  jsonb NOT NULL,
    paper          boolean NOT NULL,
    destroyed_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (witness_id <> executor_id AND witness_id <> requester_id)
);
CREATE INDEX destructions_at_idx ON destructions (destroyed_at);

CREATE FUNCTION destructions_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the destruction register is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER destructions_no_update_delete
    BEFORE UPDATE OR DELETE ON destructions
    FOR EACH ROW EXECUTE FUNCTION destructions_refuse_change();

-- Objects of destroyed files still to be removed from the object store. Their data keys
-- are erased in the destruction's own transaction (nothing decrypts them after it
-- commits); the objects are deleted right after, and whatever could not be deleted then
-- stays here until the storage GC removes it. (Not named `object_key`: a backup copies the
-- object of every `object_key` column, and these objects are meant to vanish.)
CREATE TABLE object_deletions (
    store_key  text PRIMARY KEY,
    queued_at  timestamptz NOT NULL DEFAULT now(),
    attempts   integer NOT NULL DEFAULT 0 CHECK (attempts >= 0)
);
