-- Creates the audit_events table, the platform trail of lifecycle events stored once per event id.
-- The tenant_id column deliberately has no foreign key: events may name tenants that never got a row.
CREATE TABLE audit_events (
    id          uuid        PRIMARY KEY,
    type        text        NOT NULL,
    tenant_id   uuid,
    source      text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    data        jsonb       NOT NULL
);

CREATE INDEX audit_events_tenant_id_occurred_at_idx ON audit_events (tenant_id, occurred_at);
CREATE INDEX audit_events_type_occurred_at_idx ON audit_events (type, occurred_at);
