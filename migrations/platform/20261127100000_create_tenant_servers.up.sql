-- Creates tenant_servers: the PostgreSQL servers that hold tenants, and where each tenant lives.
-- A server is reached by `url`, which never holds a password (the services find it in the
-- PostgreSQL password file, PGPASSFILE); `default` is TENANT_DATABASE_URL, whose row `tenantctl
-- setup` keeps up to date. New tenants are placed on an open server with room; a draining server
-- keeps its tenants and takes no new ones; a closed one takes none, even pinned.
CREATE TABLE tenant_servers (
    name       text        PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,39}$'),
    url        text        NOT NULL,
    capacity   integer     CHECK (capacity IS NULL OR capacity > 0),
    state      text        NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'draining', 'closed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO tenant_servers (name, url) VALUES ('default', 'TENANT_DATABASE_URL');

-- NULL only between a tenant's registration and its placement, or for a tenant registered by a
-- provisioner of the previous release (which creates every tenant on TENANT_DATABASE_URL): both
-- read as `default`.
ALTER TABLE tenants ADD COLUMN server text REFERENCES tenant_servers (name);
UPDATE tenants SET server = 'default';

-- A deploy or its canary limited to one server (`tenantctl deploy --server`); NULL: every server.
ALTER TABLE deploys ADD COLUMN server text REFERENCES tenant_servers (name);
