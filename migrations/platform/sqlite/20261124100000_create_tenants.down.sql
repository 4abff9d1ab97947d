-- Drops the tenants table and its index.
DROP TABLE tenants;
