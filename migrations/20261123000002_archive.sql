-- The archive: categories, records and their revisions, sensitive values (ciphertext and
-- blind index only), the physical register, and encrypted files.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE categories (
    id              uuid PRIMARY KEY,
    parent_id       uuid REFERENCES categories (id),
    code            text NOT NULL CHECK (code ~ '^[A-Z][A-Z0-9]{1,11}$'),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    sensitivity     text NOT NULL CHECK (sensitivity IN ('public', 'internal', 'confidential', 'secret')),
    department      text NOT NULL,
    retention_years integer NOT NULL CHECK (retention_years BETWEEN 0 AND 200),
    -- The current field schema: [{name, label, type, required, sensitive, choices}]
    fields          jsonb NOT NULL DEFAULT '[]'::jsonb,
    schema_version  integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      uuid REFERENCES users (id),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (parent_id IS DISTINCT FROM id)
);
CREATE UNIQUE INDEX categories_code_key ON categories (code);
CREATE INDEX categories_parent_idx ON categories (parent_id);

-- Every schema a category has had, so old records stay interpretable.
CREATE TABLE category_schema_versions (
    category_id uuid NOT NULL REFERENCES categories (id),
    version     integer NOT NULL,
    fields      jsonb NOT NULL,
    changed_by  uuid REFERENCES users (id),
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (category_id, version)
);

-- Reference sequences per category and year (CUST-2026-000123). Taken with
-- INSERT .. ON CONFLICT DO UPDATE .. RETURNING, which serializes on the row.
CREATE TABLE reference_counters (
    category_id uuid NOT NULL REFERENCES categories (id),
    year        integer NOT NULL,
    last_value  bigint NOT NULL,
    PRIMARY KEY (category_id, year)
);

-- The physical register.
CREATE TABLE storerooms (
    id         uuid PRIMARY KEY,
    code       text NOT NULL UNIQUE CHECK (length(code) BETWEEN 1 AND 32),
    name       text NOT NULL,
    location   text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE shelves (
    id           uuid PRIMARY KEY,
    storeroom_id uuid NOT NULL REFERENCES storerooms (id),
    code         text NOT NULL CHECK (length(code) BETWEEN 1 AND 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (storeroom_id, code)
);
CREATE TABLE boxes (
    id         uuid PRIMARY KEY,
    shelf_id   uuid NOT NULL REFERENCES shelves (id),
    code       text NOT NULL CHECK (length(code) BETWEEN 1 AND 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (shelf_id, code)
);

CREATE TABLE records (
    id          uuid PRIMARY KEY,
    category_id uuid NOT NULL REFERENCES categories (id),
    reference   text NOT NULL,
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    -- Non-sensitive field values only. Sensitive ones live in record_sensitive_values.
    fields      jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Title, reference and non-sensitive text values, for partial-name search.
    search_text text NOT NULL,
    revision    integer NOT NULL DEFAULT 1,
    schema_version integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  uuid REFERENCES users (id),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  uuid REFERENCES users (id),
    -- Set by an import so a re-run can skip rows already filed.
    external_id text
);
CREATE UNIQUE INDEX records_reference_key ON records (reference);
CREATE UNIQUE INDEX records_external_id_key ON records (category_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX records_category_created_idx ON records (category_id, created_at);
CREATE INDEX records_created_idx ON records (created_at);
CREATE INDEX records_search_trgm_idx ON records USING gin (search_text gin_trgm_ops);
CREATE INDEX records_reference_trgm_idx ON records USING gin (reference gin_trgm_ops);

-- Sensitive values: AES-256-GCM ciphertext (key derived from the KEK `kek_id`) and, for
-- exact-match search, a keyed blind index (HMAC-SHA256 of the normalized value).
CREATE TABLE record_sensitive_values (
    record_id   uuid NOT NULL REFERENCES records (id),
    field       text NOT NULL,
    ciphertext  bytea NOT NULL,
    kek_id      text NOT NULL,
    blind_index bytea,
    PRIMARY KEY (record_id, field)
);
CREATE INDEX record_sensitive_values_index_idx ON record_sensitive_values (field, blind_index);
CREATE INDEX record_sensitive_values_blind_idx ON record_sensitive_values (blind_index);

-- One row per revision: the state before the change is kept (non-sensitive values in
-- `previous`, sensitive ones as ciphertext in record_revision_sensitive_values).
CREATE TABLE record_revisions (
    record_id  uuid NOT NULL REFERENCES records (id),
    revision   integer NOT NULL,
    author_id  uuid REFERENCES users (id),
    author     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    reason     text NOT NULL,
    -- [{field, change: added|changed|removed, sensitive}] : names, never sensitive values
    changes    jsonb NOT NULL,
    previous_title  text NOT NULL,
    previous_fields jsonb NOT NULL,
    PRIMARY KEY (record_id, revision)
);
CREATE TABLE record_revision_sensitive_values (
    record_id  uuid NOT NULL,
    revision   integer NOT NULL,
    field      text NOT NULL,
    ciphertext bytea NOT NULL,
    kek_id     text NOT NULL,
    PRIMARY KEY (record_id, revision, field),
    FOREIGN KEY (record_id, revision) REFERENCES record_revisions (record_id, revision)
);

-- A record's physical part: where it is and in what state.
CREATE TABLE record_physical (
    record_id  uuid PRIMARY KEY REFERENCES records (id),
    box_id     uuid REFERENCES boxes (id),
    status     text NOT NULL CHECK (status IN ('in_store', 'on_loan', 'missing', 'destroyed')),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX record_physical_box_idx ON record_physical (box_id);
CREATE TABLE physical_moves (
    id          uuid PRIMARY KEY,
    record_id   uuid NOT NULL REFERENCES records (id),
    from_box_id uuid REFERENCES boxes (id),
    to_box_id   uuid REFERENCES boxes (id),
    from_status text,
    to_status   text NOT NULL,
    reason      text NOT NULL,
    moved_by    uuid REFERENCES users (id),
    moved_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX physical_moves_record_idx ON physical_moves (record_id, moved_at);

-- Encrypted files. The object is written first, the row second; objects that no row
-- references after a grace period are removed by the storage GC.
CREATE TABLE files (
    id            uuid PRIMARY KEY,
    record_id     uuid NOT NULL REFERENCES records (id),
    version       integer NOT NULL,
    object_key    text NOT NULL UNIQUE,
    kek_id        text NOT NULL,
    wrapped_key   bytea NOT NULL,
    size          bigint NOT NULL CHECK (size >= 0),
    media_type    text NOT NULL,
    original_name text NOT NULL,
    sha256        bytea NOT NULL CHECK (length(sha256) = 32),
    uploaded_by   uuid REFERENCES users (id),
    uploaded_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (record_id, version)
);
