-- Leavers and the periodic access review.
--
-- Disabling an account settles what the person holds in the same transaction: their
-- pending requests are cancelled (`cancel_reason` says why), their grants in force
-- revoked, and their loans still out flagged to the loans desk (`holder_left_at`, kept
-- until the file comes back). Each settlement keeps a handover row with its note and the
-- ids it settled.
ALTER TABLE users ADD COLUMN last_sign_in_at timestamptz;
ALTER TABLE access_requests
    ADD COLUMN cancel_reason text CHECK (cancel_reason IS NULL OR cancel_reason IN ('account_disabled'));
ALTER TABLE loans ADD COLUMN holder_left_at timestamptz;

CREATE TABLE account_handovers (
    id                 uuid PRIMARY KEY,
    user_id            uuid NOT NULL REFERENCES users (id),
    -- The administrator who disabled the account; NULL when the machine's operator did
    -- it from the command line (named in `settled_by`).
    settled_by_id      uuid REFERENCES users (id),
    settled_by         text NOT NULL,
    note               text NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    created_at         timestamptz NOT NULL DEFAULT now(),
    cancelled_requests uuid[] NOT NULL DEFAULT '{}',
    revoked_grants     uuid[] NOT NULL DEFAULT '{}',
    flagged_loans      uuid[] NOT NULL DEFAULT '{}'
);
CREATE INDEX account_handovers_user_idx ON account_handovers (user_id, created_at);

-- A completed access review: who completed it, when, the filter they reviewed with and
-- how many accounts it listed.
CREATE TABLE access_reviews (
    id            uuid PRIMARY KEY,
    completed_by  uuid NOT NULL REFERENCES users (id),
    completed_at  timestamptz NOT NULL DEFAULT now(),
    inactive_days integer NOT NULL CHECK (inactive_days BETWEEN 1 AND 3650),
    only_inactive boolean NOT NULL,
    accounts      integer NOT NULL CHECK (accounts >= 0),
    inactive      integer NOT NULL CHECK (inactive >= 0),
    note          text NOT NULL DEFAULT '' CHECK (length(note) <= 2000)
);
CREATE INDEX access_reviews_completed_idx ON access_reviews (completed_at);

-- Data migrations that need the application (its keys) and so run at start-up after the
-- SQL migrations, each once: a row here says it is done.
CREATE TABLE app_data_migrations (
    name    text PRIMARY KEY,
    done_at timestamptz NOT NULL DEFAULT now(),
    rows    bigint NOT NULL CHECK (rows >= 0)
);
