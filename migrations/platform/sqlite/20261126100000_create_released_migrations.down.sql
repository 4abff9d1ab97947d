-- Drops released_migrations: deploys and services no longer detect edited released files.
DROP TABLE released_migrations;
