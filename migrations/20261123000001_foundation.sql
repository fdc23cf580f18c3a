-- Foundation: accounts, sessions, login throttling and the append-only audit trail.

CREATE TABLE users (
    id                   uuid PRIMARY KEY,
    username             text NOT NULL CHECK (username ~ '^[A-Za-z0-9._-]{1,64}$'),
    display_name         text NOT NULL,
    department           text NOT NULL DEFAULT '',
    roles                text[] NOT NULL CHECK (
                             cardinality(roles) > 0
                             AND roles <@ ARRAY['archivist','employee','supervisor','auditor','admin']::text[]),
    password_hash        text NOT NULL,
    must_change_password boolean NOT NULL DEFAULT false,
    status               text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    disabled_at          timestamptz,
    password_changed_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'disabled') = (disabled_at IS NOT NULL))
);
-- Usernames are unique regardless of case.
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));

-- Only the SHA-256 of a session token is stored: a database reader cannot ride a session.
CREATE TABLE sessions (
    id           uuid PRIMARY KEY,
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    user_id      uuid NOT NULL REFERENCES users (id),
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    client_addr  text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

-- Failed-login counters, keyed by account (`user:<lower username>`, whether or not the
-- account exists, so a lockout reveals nothing) and by client address (`addr:<ip>`).
CREATE TABLE login_throttle (
    key              text PRIMARY KEY,
    failures         integer NOT NULL,
    first_failure_at timestamptz NOT NULL,
    locked_until     timestamptz
);

-- The audit trail. `seq` is gap-free and each row's `hash` is
-- SHA-256(prev_hash || canonical encoding of the event) computed by the application under a
-- transaction-scoped advisory lock; `strongroom verify-audit` recomputes the chain.
CREATE TABLE audit_events (
    seq          bigint PRIMARY KEY CHECK (seq > 0),
    id           uuid NOT NULL UNIQUE,
    occurred_at  timestamptz NOT NULL,
    actor_id     uuid,
    actor        text NOT NULL,
    action       text NOT NULL,
    object_type  text,
    object_id    text,
    outcome      text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    client_addr  text,
    request_id   text,
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb,
    prev_hash    bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash         bytea NOT NULL CHECK (length(hash) = 32)
);
CREATE INDEX audit_events_occurred_at_idx ON audit_events (occurred_at);
CREATE INDEX audit_events_actor_idx ON audit_events (actor_id, occurred_at);
CREATE INDEX audit_events_object_idx ON audit_events (object_type, object_id);
CREATE INDEX audit_events_action_idx ON audit_events (action, occurred_at);

CREATE FUNCTION audit_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
