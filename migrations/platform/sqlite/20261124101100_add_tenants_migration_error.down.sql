-- Drops tenants.migration_error.
ALTER TABLE tenants DROP COLUMN migration_error;
