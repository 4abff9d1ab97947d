-- Drops deploy_tenants and deploys.
DROP TABLE deploy_tenants;
DROP TABLE deploys;
