-- Drops audit_events.conflicts_with and audit_events.content_digest (conflict rows stay, as
-- ordinary rows under their derived ids).
ALTER TABLE audit_events DROP COLUMN conflicts_with;
ALTER TABLE audit_events DROP COLUMN content_digest;
