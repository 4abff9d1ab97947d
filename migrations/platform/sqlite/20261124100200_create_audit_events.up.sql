-- Creates the audit_events table, the platform trail of lifecycle events stored once per event id.
-- The tenant_id column deliberately has no foreign key: events may name tenants that never got a row.
CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY NOT NULL,
    type        TEXT NOT NULL,
    tenant_id   TEXT,
    source      TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    data        TEXT NOT NULL CHECK (json_valid(data))
);

CREATE INDEX audit_events_tenant_id_occurred_at_idx ON audit_events (tenant_id, occurred_at);
CREATE INDEX audit_events_type_occurred_at_idx ON audit_events (type, occurred_at);
