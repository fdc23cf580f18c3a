-- The audit trail without a global lock.
--
-- Before: every append took one advisory lock held until commit, so every audited action
-- in the vault was serialized behind it. Now an action's transaction only inserts its event
-- (fail closed as before: no event, no action); a sequencer (one node at a time, an
-- advisory lock of its own, outside the request path) chains committed events in batches
-- into `audit_chain`, which is append-only like the events.
--
-- Chaining order is (xid, pos): the inserting transaction's 64-bit id, then the insertion
-- position within it. The sequencer only takes events whose transaction is older than its
-- snapshot's xmin, so every transaction it could ever see there has finished: no event can
-- later appear behind the chain's head, and the order is final.

-- Insertion position and transaction of every event. Existing events are already chained:
-- they keep their place (pos = seq) under transaction 0.
ALTER TABLE audit_events ADD COLUMN pos bigint, ADD COLUMN xid xid8;
ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete;
UPDATE audit_events SET pos = seq, xid = '0'::xid8;
ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete;

CREATE SEQUENCE audit_events_pos_seq AS bigint OWNED BY audit_events.pos;
SELECT setval('audit_events_pos_seq', COALESCE((SELECT max(seq) FROM audit_events), 0) + 1, false);

ALTER TABLE audit_events
    ALTER COLUMN pos SET DEFAULT nextval('audit_events_pos_seq'),
    ALTER COLUMN pos SET NOT NULL,
    ALTER COLUMN xid SET DEFAULT pg_current_xact_id(),
    ALTER COLUMN xid SET NOT NULL;

-- The chain: one row per chained event, gap-free `seq`,
-- hash = SHA-256(prev_hash || canonical encoding of (seq, event)).
CREATE TABLE audit_chain (
    seq       bigint PRIMARY KEY CHECK (seq > 0),
    event_id  uuid NOT NULL UNIQUE REFERENCES audit_events (id),
    prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash      bytea NOT NULL CHECK (length(hash) = 32)
);
INSERT INTO audit_chain (seq, event_id, prev_hash, hash)
    SELECT seq, id, prev_hash, hash FROM audit_events ORDER BY seq;

ALTER TABLE audit_events DROP COLUMN seq, DROP COLUMN prev_hash, DROP COLUMN hash;
ALTER TABLE audit_events ADD PRIMARY KEY (pos);
CREATE INDEX audit_events_order_idx ON audit_events (xid, pos);

-- Position and transaction are the database's, never the inserter's: an event cannot be
-- back-dated behind the chain's head, where the sequencer would never look.
CREATE FUNCTION audit_events_assign_position() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.pos := nextval('audit_events_pos_seq');
    NEW.xid := pg_current_xact_id();
    RETURN NEW;
END;
$$;
CREATE TRIGGER audit_events_position
    BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_assign_position();

CREATE FUNCTION audit_chain_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_chain is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_chain_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_chain_refuse_change();
CREATE TRIGGER audit_chain_no_truncate
    BEFORE TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_refuse_change();
