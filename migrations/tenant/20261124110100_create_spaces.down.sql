-- Drops the spaces table.
DROP TABLE spaces;
