-- Drops the audit_log table and its indexes.
DROP TABLE audit_log;
