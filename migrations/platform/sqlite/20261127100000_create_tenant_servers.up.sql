-- Creates tenant_servers: the PostgreSQL servers that hold tenants, and where each tenant lives
-- (see the PostgreSQL variant).
CREATE TABLE tenant_servers (
    name       TEXT    PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 40),
    url        TEXT    NOT NULL,
    capacity   INTEGER CHECK (capacity IS NULL OR capacity > 0),
    state      TEXT    NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'draining', 'closed')),
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

INSERT INTO tenant_servers (name, url) VALUES ('default', 'TENANT_DATABASE_URL');

ALTER TABLE tenants ADD COLUMN server TEXT REFERENCES tenant_servers (name);
UPDATE tenants SET server = 'default';

-- A deploy or its canary limited to one server (`tenantctl deploy --server`); NULL: every server.
ALTER TABLE deploys ADD COLUMN server TEXT REFERENCES tenant_servers (name);
