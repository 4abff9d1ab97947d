-- Creates the provisioning_steps table, one row per tenant and provisioning step with its progress.
CREATE TABLE provisioning_steps (
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    step        text        NOT NULL
                            CHECK (step IN ('register', 'create_storage', 'migrate', 'seed', 'admin_user', 'activate')),
    status      text        NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    attempts    integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error  text,
    started_at  timestamptz,
    finished_at timestamptz,
    duration_ms bigint      CHECK (duration_ms >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, step)
);
