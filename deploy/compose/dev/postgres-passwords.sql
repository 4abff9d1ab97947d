-- DEVELOPMENT ONLY (see README.md here): known passwords for the roles of deploy/postgres/roles.sql,
-- run after it by the PostgreSQL image's init scripts.
ALTER ROLE tenancy_owner PASSWORD 'dev-only-tenancy_owner';
ALTER ROLE tenancy_provisioner PASSWORD 'dev-only-tenancy_provisioner';
ALTER ROLE tenancy_migrator PASSWORD 'dev-only-tenancy_migrator';
ALTER ROLE tenancy_auditor PASSWORD 'dev-only-tenancy_auditor';
ALTER ROLE tenancy_deploy PASSWORD 'dev-only-tenancy_deploy';
ALTER ROLE tenancy_sre PASSWORD 'dev-only-tenancy_sre';
ALTER ROLE tenancy_reader PASSWORD 'dev-only-tenancy_reader';
