-- Creates schema_fingerprints and tenant_drift (see the PostgreSQL variant).
CREATE TABLE schema_fingerprints (
    isolation    TEXT    NOT NULL CHECK (isolation IN ('schema', 'database')),
    version      INTEGER NOT NULL CHECK (version > 0),
    server_major INTEGER NOT NULL CHECK (server_major > 0),
    set_checksum TEXT    NOT NULL CHECK (length(set_checksum) = 64),
    digest       TEXT    NOT NULL CHECK (length(digest) = 64),
    objects      TEXT    NOT NULL,
    computed_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (isolation, version, server_major)
);

CREATE TABLE tenant_drift (
    tenant_id       TEXT    PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    schema_version  INTEGER NOT NULL CHECK (schema_version > 0),
    expected_digest TEXT    NOT NULL CHECK (length(expected_digest) = 64),
    digest          TEXT    NOT NULL CHECK (length(digest) = 64),
    differences     TEXT    NOT NULL,
    checked_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
