-- Drops the audit_events table and its indexes.
DROP TABLE audit_events;
