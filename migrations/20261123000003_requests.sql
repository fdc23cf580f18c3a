-- Access requests, their approvals, and the grants approval creates.

CREATE TABLE access_requests (
    id                 uuid PRIMARY KEY,
    record_id          uuid NOT NULL REFERENCES records (id),
    requester_id       uuid NOT NULL REFERENCES users (id),
    kind               text NOT NULL CHECK (kind IN ('lookup', 'view', 'borrow', 'export')),
    purpose            text NOT NULL CHECK (length(purpose) BETWEEN 15 AND 2000),
    duration_hours     integer NOT NULL CHECK (duration_hours > 0),
    state              text NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'approved', 'rejected', 'cancelled', 'expired')),
    -- The route the workflow policy chose when the request was made.
    required_approvals integer NOT NULL CHECK (required_approvals >= 0),
    approver_role      text NOT NULL,
    same_department    boolean NOT NULL,
    department         text NOT NULL,
    sensitivity        text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    decided_at         timestamptz
);
CREATE INDEX access_requests_pending_idx ON access_requests (state, expires_at);
CREATE INDEX access_requests_requester_idx ON access_requests (requester_id, created_at);
CREATE INDEX access_requests_record_idx ON access_requests (record_id);

CREATE TABLE request_decisions (
    request_id  uuid NOT NULL REFERENCES access_requests (id),
    approver_id uuid NOT NULL REFERENCES users (id),
    decision    text NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment     text NOT NULL DEFAULT '',
    decided_at  timestamptz NOT NULL DEFAULT now(),
    -- One decision per approver per request: nobody approves twice.
    PRIMARY KEY (request_id, approver_id)
);

-- A grant is active while now() < valid_until and it is not revoked: expiry and
-- revocation take effect on the next request, whatever the background job has done.
CREATE TABLE grants (
    id            uuid PRIMARY KEY,
    request_id    uuid NOT NULL UNIQUE REFERENCES access_requests (id),
    record_id     uuid NOT NULL REFERENCES records (id),
    grantee_id    uuid NOT NULL REFERENCES users (id),
    kind          text NOT NULL CHECK (kind IN ('lookup', 'view', 'borrow', 'export')),
    valid_from    timestamptz NOT NULL DEFAULT now(),
    valid_until   timestamptz NOT NULL,
    state         text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'expired', 'revoked', 'returned')),
    revoked_by    uuid REFERENCES users (id),
    revoked_at    timestamptz,
    revoke_reason text,
    CHECK ((state = 'revoked') = (revoked_at IS NOT NULL))
);
CREATE INDEX grants_lookup_idx ON grants (grantee_id, record_id, kind);
CREATE INDEX grants_active_idx ON grants (state, valid_until);
