-- Creates deploys and deploy_tenants: every fleet deploy (`tenantctl deploy`) and the result of
-- each of its tenants, which `--wait`, `tenantctl status` and the migrator read and write.
CREATE TABLE deploys (
    id               TEXT    PRIMARY KEY NOT NULL,
    target_version   INTEGER NOT NULL CHECK (target_version > 0),
    platform_version INTEGER NOT NULL DEFAULT 0 CHECK (platform_version >= 0),
    operator         TEXT    NOT NULL,
    canary           INTEGER NOT NULL DEFAULT 0 CHECK (canary >= 0),
    status           TEXT    NOT NULL DEFAULT 'publishing'
                             CHECK (status IN ('publishing', 'published', 'canary_failed')),
    created_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    published_at     TEXT
);

CREATE INDEX deploys_created_at_idx ON deploys (created_at);

CREATE TABLE deploy_tenants (
    deploy_id    TEXT    NOT NULL REFERENCES deploys (id) ON DELETE CASCADE,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    status       TEXT    NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'published', 'retrying', 'succeeded', 'failed', 'canceled')),
    from_version INTEGER,
    to_version   INTEGER,
    applied      INTEGER NOT NULL DEFAULT 0,
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    finished_at  TEXT,
    duration_ms  INTEGER,
    PRIMARY KEY (deploy_id, tenant_id)
);

CREATE INDEX deploy_tenants_tenant_idx ON deploy_tenants (tenant_id);
