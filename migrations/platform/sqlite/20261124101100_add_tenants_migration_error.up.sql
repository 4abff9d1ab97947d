-- Adds tenants.migration_error: set when the tenant's last migration or rollback failed for good
-- (its command is in the dead-letter queue), cleared by the next success. Non-null means the
-- tenant needs reprocessing; `tenantctl status` shows it.
ALTER TABLE tenants ADD COLUMN migration_error TEXT;
