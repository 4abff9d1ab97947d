-- Removes the duration_minutes column from reservations.
ALTER TABLE reservations DROP COLUMN duration_minutes;
