-- Creates tenant_catalog_stamps (see the PostgreSQL variant).
CREATE TABLE tenant_catalog_stamps (
    tenant_id       TEXT    PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    server          TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL CHECK (schema_version > 0),
    expected_digest TEXT    NOT NULL CHECK (length(expected_digest) = 64),
    stamp           TEXT    NOT NULL,
    digest          TEXT    NOT NULL CHECK (length(digest) = 64),
    read_at         TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
