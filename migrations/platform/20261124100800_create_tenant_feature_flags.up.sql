-- Creates the tenant_feature_flags table, the per-tenant overrides of feature flags.
CREATE TABLE tenant_feature_flags (
    tenant_id  uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    flag_key   text        NOT NULL REFERENCES feature_flags (key) ON DELETE CASCADE,
    enabled    boolean     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, flag_key)
);

CREATE INDEX tenant_feature_flags_flag_key_idx ON tenant_feature_flags (flag_key);
