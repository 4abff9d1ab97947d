-- Drops tenant_catalog_stamps: the next `tenantctl drift` reads every tenant in full, and keeps
-- their stamps again.
DROP TABLE tenant_catalog_stamps;
