-- Creates released_migrations: every tenant migration (and tenant seed) as it was the first time
-- it completed on a tenant, through the migrator or the provisioner. Deploys and services compare
-- their files with it, so an edited, deleted or renamed released file is refused without reading
-- any tenant's history.
CREATE TABLE released_migrations (
    migration_set TEXT    NOT NULL CHECK (migration_set IN ('tenant', 'tenant-seeds')),
    version       INTEGER NOT NULL CHECK (version > 0),
    description   TEXT    NOT NULL,
    checksum      TEXT    NOT NULL CHECK (length(checksum) = 64),
    released_by   TEXT    NOT NULL,
    released_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (migration_set, version)
);
