-- The role Grafana's `platform` data source connects as: read-only, and blind to personal data.
-- It may SELECT deploys, deploy_tenants and the tenants columns that are not personal (`name`,
-- the condominium's name, is left out; the admin's e-mail and name never reach the platform's
-- tenants table). Run it as the owner of the platform tables, in the platform database, after
-- the platform migrations (and again after any migration that adds a tenants column Grafana
-- should see):
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/grafana/platform-reader.sql
--   psql "$DATABASE_URL" -c "ALTER ROLE grafana_reader PASSWORD '…'"
-- Running it twice is harmless.

DO $$
BEGIN
    CREATE ROLE grafana_reader LOGIN;
EXCEPTION
    -- Roles belong to the whole server: another platform database may have created it already
    -- (unique_violation: at the same moment).
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

-- Even a grant given by mistake later cannot make it write.
ALTER ROLE grafana_reader SET default_transaction_read_only = on;

-- Once the first tenant has storage on this server, the platform database is closed to PUBLIC
-- (CONNECT and schema public): every role that reads it needs its own grants.
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO grafana_reader', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO grafana_reader;
GRANT SELECT ON deploys, deploy_tenants TO grafana_reader;
GRANT SELECT (id, slug, status, isolation, plan, schema_version, created_at, updated_at,
              activated_at, migration_error)
    ON tenants TO grafana_reader;
