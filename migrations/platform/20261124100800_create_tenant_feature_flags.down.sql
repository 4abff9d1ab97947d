-- Drops the tenant_feature_flags table and its index.
DROP TABLE tenant_feature_flags;
