-- Drops the provisioning_steps table.
DROP TABLE provisioning_steps;
