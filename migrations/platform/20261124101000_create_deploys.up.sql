-- Creates deploys and deploy_tenants: every fleet deploy (`tenantctl deploy`) and the result of
-- each of its tenants, which `--wait`, `tenantctl status` and the migrator read and write.
CREATE TABLE deploys (
    id               uuid        PRIMARY KEY,
    target_version   bigint      NOT NULL CHECK (target_version > 0),
    platform_version bigint      NOT NULL DEFAULT 0 CHECK (platform_version >= 0),
    operator         text        NOT NULL,
    canary           integer     NOT NULL DEFAULT 0 CHECK (canary >= 0),
    status           text        NOT NULL DEFAULT 'publishing'
                                 CHECK (status IN ('publishing', 'published', 'canary_failed')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    published_at     timestamptz
);

CREATE INDEX deploys_created_at_idx ON deploys (created_at);

CREATE TABLE deploy_tenants (
    deploy_id    uuid        NOT NULL REFERENCES deploys (id) ON DELETE CASCADE,
    tenant_id    uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    status       text        NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'published', 'retrying', 'succeeded', 'failed', 'canceled')),
    from_version bigint,
    to_version   bigint,
    applied      integer     NOT NULL DEFAULT 0,
    attempts     integer     NOT NULL DEFAULT 0,
    error        text,
    finished_at  timestamptz,
    duration_ms  bigint,
    PRIMARY KEY (deploy_id, tenant_id)
);

CREATE INDEX deploy_tenants_tenant_idx ON deploy_tenants (tenant_id);
