-- Creates schema_fingerprints and tenant_drift (`tenantctl drift`, docs/OPERATIONS.md).
--
-- schema_fingerprints: what a tenant's schema looks like at a version of the tenant set, in an
-- isolation mode, as a server of a PostgreSQL major version describes it (the catalogs' text of
-- a definition can change between majors). Computed once on a scratch tenant; `set_checksum`
-- names the migrations it was built from, so a version edited before its release is computed
-- again. `objects` is the fingerprint itself: [kind, name, definition] with `<tenant>` for the
-- tenant's schema and role names.
CREATE TABLE schema_fingerprints (
    isolation    text        NOT NULL CHECK (isolation IN ('schema', 'database')),
    version      bigint      NOT NULL CHECK (version > 0),
    server_major integer     NOT NULL CHECK (server_major > 0),
    set_checksum text        NOT NULL CHECK (length(set_checksum) = 64),
    digest       text        NOT NULL CHECK (length(digest) = 64),
    objects      jsonb       NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (isolation, version, server_major)
);

-- tenant_drift: the tenants whose schema differed from the expected one when last checked,
-- each with its differences (one line each, as `tenantctl drift` prints them). A check removes
-- the rows of the tenants it found clean; the fleet gauges count the rest.
CREATE TABLE tenant_drift (
    tenant_id       uuid        PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    schema_version  bigint      NOT NULL CHECK (schema_version > 0),
    expected_digest text        NOT NULL CHECK (length(expected_digest) = 64),
    digest          text        NOT NULL CHECK (length(digest) = 64),
    differences     jsonb       NOT NULL,
    checked_at      timestamptz NOT NULL DEFAULT now()
);
