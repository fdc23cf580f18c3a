-- Loans of physical files under approved borrow requests.

CREATE TABLE loans (
    id             uuid PRIMARY KEY,
    request_id     uuid NOT NULL UNIQUE REFERENCES access_requests (id),
    record_id      uuid NOT NULL REFERENCES records (id),
    borrower_id    uuid NOT NULL REFERENCES users (id),
    checked_out_by uuid NOT NULL REFERENCES users (id),
    out_at         timestamptz NOT NULL DEFAULT now(),
    due_date       date NOT NULL,
    returned_at    timestamptz,
    returned_to    uuid REFERENCES users (id),
    condition      text
);
-- A record is lent at most once at a time.
CREATE UNIQUE INDEX loans_one_open_per_record ON loans (record_id) WHERE returned_at IS NULL;
CREATE INDEX loans_due_idx ON loans (due_date) WHERE returned_at IS NULL;
