-- Export downloads under approved export requests: one download link per request, which
-- works once and expires. The optional zip password is kept only sealed (AES-GCM under
-- the key ring, bound to the request id) and only until the download; it is never stored
-- in the clear.

CREATE TABLE exports (
    request_id          uuid PRIMARY KEY REFERENCES access_requests (id),
    grant_id            uuid NOT NULL REFERENCES grants (id),
    created_by          uuid NOT NULL REFERENCES users (id),
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    encrypted           boolean NOT NULL,
    password_kek_id     text,
    password_sealed     bytea,
    downloaded_at       timestamptz,
    CHECK (encrypted = (password_sealed IS NOT NULL) OR downloaded_at IS NOT NULL),
    CHECK (downloaded_at IS NULL OR password_sealed IS NULL)
);
