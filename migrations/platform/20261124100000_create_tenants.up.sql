-- Creates the tenants table, the registry of every customer condominium and its lifecycle state.
CREATE TABLE tenants (
    id             uuid        PRIMARY KEY,
    slug           text        NOT NULL UNIQUE CHECK (slug ~ '^[a-z][a-z0-9_]{2,39}$'),
    name           text        NOT NULL,
    status         text        NOT NULL DEFAULT 'provisioning'
                               CHECK (status IN ('provisioning', 'active', 'failed', 'suspended', 'deleted')),
    isolation      text        NOT NULL CHECK (isolation IN ('schema', 'database')),
    plan           text,
    schema_version bigint      NOT NULL DEFAULT 0 CHECK (schema_version >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    activated_at   timestamptz
);

CREATE INDEX tenants_status_idx ON tenants (status);
