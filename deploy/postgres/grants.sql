-- What each service role may do with the platform tables. `tenantctl setup` runs this, as the
-- owner of the tables, after the platform migrations, on every install and upgrade; a role that
-- does not exist (a development server without deploy/postgres/roles.sql) is skipped. A platform
-- migration that adds a table adds its line here, or no service can use the table.
DO $grants$
DECLARE
    wanted record;
BEGIN
    FOR wanted IN
        SELECT *
          FROM (VALUES
              -- Every process waits for the platform schema (the platform's history) and
              -- checks its migration files against the released ones.
              ('tenancy_provisioner', 'SELECT', '_tenancy_history, released_migrations'),
              ('tenancy_migrator',    'SELECT', '_tenancy_history, released_migrations'),
              ('tenancy_auditor',     'SELECT', '_tenancy_history, released_migrations'),
              ('tenancy_deploy',      'SELECT', '_tenancy_history, released_migrations'),
              ('tenancy_sre',         'SELECT', '_tenancy_history, released_migrations'),
              ('tenancy_reader',      'SELECT', '_tenancy_history, released_migrations'),

              -- Registers tenants and drives their steps; records what it released to them.
              ('tenancy_provisioner', 'SELECT, INSERT, UPDATE', 'tenants, provisioning_steps'),
              ('tenancy_provisioner', 'SELECT, INSERT', 'released_migrations'),
              ('tenancy_provisioner', 'SELECT', 'plans, deploys'),
              -- Places each new tenant on a server, and reaches it there.
              ('tenancy_provisioner', 'SELECT', 'tenant_servers'),
              -- A tenant activated during a deploy joins it.
              ('tenancy_provisioner', 'SELECT, INSERT', 'deploy_tenants'),
              -- A verified template's fingerprint is the expected one of its version.
              ('tenancy_provisioner', 'SELECT, INSERT, UPDATE', 'schema_fingerprints'),

              -- Records each tenant's version and errors, and each deploy's per-tenant outcome.
              ('tenancy_migrator', 'SELECT, UPDATE', 'tenants'),
              ('tenancy_migrator', 'SELECT, INSERT, UPDATE', 'deploy_tenants'),
              ('tenancy_migrator', 'SELECT', 'deploys, dlq_replays, tenant_servers'),
              -- Counts drifted tenants for the fleet gauges.
              ('tenancy_migrator', 'SELECT', 'tenant_drift'),
              ('tenancy_migrator', 'SELECT, INSERT', 'released_migrations'),

              -- The audit trail: inserts, and reads an event id again to tell a redelivery from
              -- a conflict. Nothing else.
              ('tenancy_auditor', 'SELECT, INSERT', 'audit_events'),

              -- Records deploys and follows them.
              ('tenancy_deploy', 'SELECT', 'tenants, released_migrations, provisioning_steps, tenant_servers'),
              ('tenancy_deploy', 'SELECT, INSERT, UPDATE', 'deploys, deploy_tenants'),
              -- Checks the tenants it migrates for drift (`tenantctl deploy`, `drift`).
              ('tenancy_deploy', 'SELECT, INSERT, UPDATE', 'schema_fingerprints'),
              ('tenancy_deploy', 'SELECT, INSERT, DELETE', 'tenant_drift'),
              ('tenancy_deploy', 'SELECT, INSERT, UPDATE', 'tenant_catalog_stamps'),

              -- Deploys too, and rollbacks, dead-letter replays, provisioning retries.
              ('tenancy_sre', 'SELECT, UPDATE', 'tenants, provisioning_steps'),
              ('tenancy_sre', 'SELECT', 'released_migrations, audit_events'),
              ('tenancy_sre', 'SELECT, INSERT, UPDATE', 'deploys, deploy_tenants, dlq_replays'),
              -- `tenantctl servers add|drain|open`.
              ('tenancy_sre', 'SELECT, INSERT, UPDATE', 'tenant_servers'),
              -- `tenantctl drift`.
              ('tenancy_sre', 'SELECT, INSERT, UPDATE', 'schema_fingerprints'),
              ('tenancy_sre', 'SELECT, INSERT, DELETE', 'tenant_drift'),
              ('tenancy_sre', 'SELECT, INSERT, UPDATE', 'tenant_catalog_stamps'),

              -- Read commands. Not the platform domain (plans, invoices, platform users).
              ('tenancy_reader', 'SELECT',
               'tenants, provisioning_steps, audit_events, released_migrations, deploys, deploy_tenants, dlq_replays, tenant_servers, schema_fingerprints, tenant_drift, tenant_catalog_stamps')
          ) AS g(role, privileges, tables)
         WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g.role)
    LOOP
        EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', wanted.role);
        EXECUTE format('GRANT %s ON %s TO %I', wanted.privileges, wanted.tables, wanted.role);
        IF wanted.privileges LIKE '%INSERT%' THEN
            EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %I', wanted.role);
        END IF;
    END LOOP;
END
$grants$;
