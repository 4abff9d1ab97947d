-- Creates the provisioning_steps table, one row per tenant and provisioning step with its progress.
CREATE TABLE provisioning_steps (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    step        TEXT    NOT NULL
                        CHECK (step IN ('register', 'create_storage', 'migrate', 'seed', 'admin_user', 'activate')),
    status      TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error  TEXT,
    started_at  TEXT,
    finished_at TEXT,
    duration_ms INTEGER CHECK (duration_ms >= 0),
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (tenant_id, step)
);
