-- Drops tenant_drift and schema_fingerprints: both are computed again by the next
-- `tenantctl drift`.
DROP TABLE tenant_drift;
DROP TABLE schema_fingerprints;
