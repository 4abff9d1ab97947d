-- Creates the tenant_feature_flags table, the per-tenant overrides of feature flags.
CREATE TABLE tenant_feature_flags (
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    flag_key   TEXT    NOT NULL REFERENCES feature_flags (key) ON DELETE CASCADE,
    enabled    INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (tenant_id, flag_key)
);

CREATE INDEX tenant_feature_flags_flag_key_idx ON tenant_feature_flags (flag_key);
