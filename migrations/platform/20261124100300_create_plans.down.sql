-- Drops the plans table.
DROP TABLE plans;
