-- Background jobs run once per interval across all nodes sharing this database.
--
-- A node runs a job only after claiming it: one statement moves `next_run_at` one interval
-- ahead if it is due, so of several nodes polling at once exactly one wins each interval
-- (see src/jobs.rs). `runs` counts the runs claimed; `job_runs` logs each claim, and its
-- primary key (job, slot) makes two claims of one slot impossible.
CREATE TABLE job_schedule (
    job         text PRIMARY KEY CHECK (job ~ '^[a-z][a-z0-9_-]{0,63}$'),
    next_run_at timestamptz NOT NULL,
    runs        bigint NOT NULL DEFAULT 0 CHECK (runs >= 0),
    last_node   text,
    last_run_at timestamptz
);

CREATE TABLE job_runs (
    job        text NOT NULL REFERENCES job_schedule (job) ON DELETE CASCADE,
    -- The run's number: `job_schedule.runs` after the claim.
    slot       bigint NOT NULL,
    node       text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, slot)
);

CREATE INDEX job_runs_claimed_at ON job_runs (claimed_at);
