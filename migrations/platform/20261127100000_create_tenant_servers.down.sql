-- Drops tenant_servers and the placement of every tenant: every tenant must be back on
-- TENANT_DATABASE_URL first.
ALTER TABLE deploys DROP COLUMN server;
ALTER TABLE tenants DROP COLUMN server;
DROP TABLE tenant_servers;
