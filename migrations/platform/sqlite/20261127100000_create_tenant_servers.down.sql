-- Drops tenant_servers and the placement of every tenant.
ALTER TABLE tenants DROP COLUMN server;
DROP TABLE tenant_servers;
