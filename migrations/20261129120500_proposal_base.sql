-- The revision a correction was proposed against: approving it once the record has moved
-- on would silently undo the changes made since, so approval then fails (409) instead.
ALTER TABLE record_proposals ADD COLUMN base_revision integer;
UPDATE record_proposals p SET base_revision = r.revision
  FROM records r WHERE p.record_id = r.id AND p.kind = 'update' AND p.state = 'pending';
