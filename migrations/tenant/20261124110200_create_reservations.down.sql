-- Drops the reservations table and its index.
DROP TABLE reservations;
