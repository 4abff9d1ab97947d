-- Creates the tenants table, the registry of every customer condominium and its lifecycle state.
CREATE TABLE tenants (
    id             TEXT    PRIMARY KEY NOT NULL,
    slug           TEXT    NOT NULL UNIQUE
                           CHECK (length(slug) BETWEEN 3 AND 40
                                  AND slug GLOB '[a-z]*'
                                  AND slug NOT GLOB '*[^a-z0-9_]*'),
    name           TEXT    NOT NULL,
    status         TEXT    NOT NULL DEFAULT 'provisioning'
                           CHECK (status IN ('provisioning', 'active', 'failed', 'suspended', 'deleted')),
    isolation      TEXT    NOT NULL CHECK (isolation IN ('schema', 'database')),
    plan           TEXT,
    schema_version INTEGER NOT NULL DEFAULT 0 CHECK (schema_version >= 0),
    created_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    activated_at   TEXT
);

CREATE INDEX tenants_status_idx ON tenants (status);
