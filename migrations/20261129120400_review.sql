-- Review before changes take effect: a category may require that a new record or a
-- correction is saved as a proposal and applied only when a second person approves it.

ALTER TABLE categories ADD COLUMN review boolean NOT NULL DEFAULT false;

-- Who approved a revision (or the filing) made under review; NULL when none was needed.
ALTER TABLE record_revisions ADD COLUMN reviewer text;
ALTER TABLE records ADD COLUMN reviewed_by text;

-- A proposal: the filing or correction as the proposer made it, sealed (it holds the
-- sensitive values typed), with a summary that names fields but never sensitive values.
CREATE TABLE record_proposals (
    id           uuid PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('create', 'update')),
    category_id  uuid NOT NULL REFERENCES categories (id),
    record_id    uuid REFERENCES records (id),
    proposer_id  uuid NOT NULL REFERENCES users (id),
    summary      jsonb NOT NULL,
    kek_id       text NOT NULL,
    sealed       bytea NOT NULL,
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'approved', 'rejected', 'withdrawn')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    reviewer_id  uuid REFERENCES users (id),
    decided_at   timestamptz,
    comment      text NOT NULL DEFAULT '',
    -- The record the approved proposal filed or corrected.
    result_record_id uuid REFERENCES records (id),
    CHECK ((kind = 'update') = (record_id IS NOT NULL)),
    CHECK ((state = 'pending') = (decided_at IS NULL))
);
CREATE INDEX record_proposals_pending_idx ON record_proposals (state, created_at);
CREATE INDEX record_proposals_record_idx ON record_proposals (record_id) WHERE record_id IS NOT NULL;
