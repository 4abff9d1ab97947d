-- The PostgreSQL roles of a least-privileged install, and the platform database.
--
-- Run once by an administrator (a superuser, or a role with CREATEROLE and CREATEDB that may
-- grant what follows), in any database of the server:
--   psql "postgres://admin@db.example.com/postgres" -v ON_ERROR_STOP=1 -f deploy/postgres/roles.sql
-- then give the login roles their passwords (never kept in this repository):
--   psql … -c "ALTER ROLE tenancy_migrator PASSWORD '…'"
-- Running it again is harmless. `tenantctl setup`, as tenancy_owner, then creates the platform
-- tables and grants each service role what it uses of them (deploy/postgres/grants.sql).
-- docs/DEPLOYMENT.md ("Users and roles") says why each right is needed.
--
-- The platform database is `tenancy` unless told otherwise: -v platform_database=other

\if :{?platform_database}
\else
  \set platform_database tenancy
\endif

-- Every role, created if missing. Login roles get no password here.
SELECT format('CREATE ROLE %I %s', name, attributes)
  FROM (VALUES
      -- Owns the platform database and its tables: `tenantctl setup` (platform migrations).
      ('tenancy_owner', 'LOGIN'),
      -- Owns every tenant schema and database, and what tenant migrations create there; no
      -- one logs in as it: the provisioner and the migrator act as it (TENANT_OWNER_ROLE).
      ('tenancy_tenants', 'NOLOGIN'),
      -- Creates tenant schemas, databases and roles (CREATEDB, CREATEROLE, below).
      ('tenancy_provisioner', 'LOGIN'),
      -- Changes tenant schemas (as tenancy_tenants) and records the results.
      ('tenancy_migrator', 'LOGIN'),
      -- Inserts audit rows.
      ('tenancy_auditor', 'LOGIN'),
      -- The deploy job: records deploys, reads tenants.
      ('tenancy_deploy', 'LOGIN'),
      -- SREs: rollback, dead-letter replay, provisioning retry.
      ('tenancy_sre', 'LOGIN'),
      -- `tenantctl status`, `audit`, `migrations status`: reads the platform tables.
      ('tenancy_reader', 'LOGIN')
  ) AS wanted(name, attributes)
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = wanted.name)
\gexec

-- Attributes are set every run, so that a role created by hand gets them too.
ALTER ROLE tenancy_provisioner CREATEDB CREATEROLE;
ALTER ROLE tenancy_reader SET default_transaction_read_only = on;

-- The provisioner creates tenant storage owned by tenancy_tenants (which needs membership), and
-- the migrator changes it as tenancy_tenants. SREs read tenant histories for rollback checks and
-- `tenant show` as it.
GRANT tenancy_tenants TO tenancy_provisioner, tenancy_migrator, tenancy_sre;

SELECT format('CREATE DATABASE %I OWNER tenancy_owner', :'platform_database')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'platform_database')
\gexec

-- Closed to PUBLIC: tenant roles (schema mode) are granted CONNECT one by one by the
-- provisioner, which therefore holds CONNECT with the grant option.
REVOKE CONNECT, TEMPORARY ON DATABASE :"platform_database" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"platform_database"
   TO tenancy_owner, tenancy_migrator, tenancy_auditor, tenancy_deploy, tenancy_sre, tenancy_reader;
GRANT CONNECT ON DATABASE :"platform_database" TO tenancy_provisioner WITH GRANT OPTION;
-- Schema-isolated tenants are schemas of this database (TENANT_DATABASE_URL defaults to it).
GRANT CREATE ON DATABASE :"platform_database" TO tenancy_tenants;

\connect :"platform_database"
-- PostgreSQL 14 and older let PUBLIC create objects in `public`; the tables there are the
-- platform's. Each role's USAGE comes from grants.sql.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO tenancy_owner WITH GRANT OPTION;
