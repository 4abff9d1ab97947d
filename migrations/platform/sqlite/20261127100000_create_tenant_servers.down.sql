-- Drops tenant_servers and the placement of every tenant.
ALTER TABLE deploys DROP COLUMN server;
ALTER TABLE tenants DROP COLUMN server;
DROP TABLE tenant_servers;
