-- Two-factor sign-in (TOTP, RFC 6238). One row per account that has begun enrolment: the
-- secret sealed under a key-encryption key (AES-256-GCM, the account id and the field
-- name `totp.secret` as associated data), never stored readable. `confirmed_at` NULL: the
-- enrolment is pending until the person proves a code. `last_step` is the 30-second time
-- step of the last code accepted; a code of that step or an earlier one is refused, so a
-- code works once.
CREATE TABLE user_totp (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    kek_id text NOT NULL,
    secret_sealed bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    confirmed_at timestamptz,
    last_step bigint
);

-- Single-use recovery codes, handed out once at confirmation. Only a keyed hash is kept
-- (HMAC-SHA256 under the vault's blind-index key, bound to the account).
CREATE TABLE user_recovery_codes (
    user_id uuid NOT NULL REFERENCES user_totp (user_id) ON DELETE CASCADE,
    code_hash bytea NOT NULL,
    used_at timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- A sign-in whose password was right, waiting for its second factor (the web's second
-- step). Not a session: it opens nothing but the code form, lives a few minutes, is bound
-- to one account and is consumed by the first code sent with it. Only the token's SHA-256
-- is stored.
CREATE TABLE login_challenges (
    token_hash bytea PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX login_challenges_expires ON login_challenges (expires_at);
