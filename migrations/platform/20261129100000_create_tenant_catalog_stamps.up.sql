-- Creates tenant_catalog_stamps (`tenantctl drift`, docs/OPERATIONS.md).
--
-- tenant_catalog_stamps: for each tenant whose schema a drift check read in full, the catalog
-- stamp taken just before that read (a count and a hash of the `xmin` of the catalog rows that
-- make up the schema) and what the read found: `digest`, against `expected_digest` of
-- `schema_version`. The next check reads the stamps only; a tenant whose stamp, version and
-- expectation are all the same keeps its last result (clean when `digest = expected_digest`,
-- otherwise drifted with the differences kept in tenant_drift), and only the others are read
-- again. `server`: a tenant moved to another server has other catalogs.
CREATE TABLE tenant_catalog_stamps (
    tenant_id       uuid        PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    server          text        NOT NULL,
    schema_version  bigint      NOT NULL CHECK (schema_version > 0),
    expected_digest text        NOT NULL CHECK (length(expected_digest) = 64),
    stamp           text        NOT NULL,
    digest          text        NOT NULL CHECK (length(digest) = 64),
    read_at         timestamptz NOT NULL DEFAULT now()
);
