-- Drops the users table and its index.
DROP TABLE users;
