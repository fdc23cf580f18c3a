-- Integrity scrubs: every stored object decrypted and checked against its row, rows whose
-- object is missing, objects no row references. One row per finished run, kept so that
-- administrators can see the latest results; `problems` names each damaged or missing file
-- (file id, record reference, object key, reason), never any content.

CREATE TABLE scrub_runs (
    id                  uuid PRIMARY KEY,
    started_at          timestamptz NOT NULL,
    finished_at         timestamptz NOT NULL,
    -- `job` (the background job) or `cli:<account>` (strongroom scrub)
    origin              text NOT NULL,
    files_checked       bigint NOT NULL CHECK (files_checked >= 0),
    files_verified      bigint NOT NULL CHECK (files_verified >= 0),
    bytes_verified      bigint NOT NULL CHECK (bytes_verified >= 0),
    objects_listed      bigint NOT NULL CHECK (objects_listed >= 0),
    damaged             integer NOT NULL CHECK (damaged >= 0),
    missing             integer NOT NULL CHECK (missing >= 0),
    unreferenced        integer NOT NULL CHECK (unreferenced >= 0),
    -- unreferenced objects younger than the GC grace period (uploads in flight): a warning
    unreferenced_young  integer NOT NULL CHECK (unreferenced_young >= 0),
    clean               boolean NOT NULL,
    problems            jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- problems beyond the stored list's cap, counted but not listed
    problems_omitted    integer NOT NULL DEFAULT 0 CHECK (problems_omitted >= 0)
);
CREATE INDEX scrub_runs_finished_idx ON scrub_runs (finished_at DESC);
