-- Drops the platform_users table.
DROP TABLE platform_users;
