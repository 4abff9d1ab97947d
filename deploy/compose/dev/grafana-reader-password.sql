-- DEVELOPMENT ONLY (see README.md here): Grafana's read-only role's known password.
ALTER ROLE grafana_reader PASSWORD 'dev-only-grafana_reader';
