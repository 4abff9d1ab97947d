-- Adds the nullable duration_minutes column to reservations, to be filled by the next migration.
ALTER TABLE reservations ADD COLUMN duration_minutes INTEGER;
