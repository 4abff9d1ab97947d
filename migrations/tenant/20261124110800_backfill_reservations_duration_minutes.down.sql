-- Resets reservations duration_minutes to NULL, in batches of rows still holding a value.
-- batch-size: 500
UPDATE reservations
SET duration_minutes = NULL
WHERE id IN (
    SELECT id FROM reservations WHERE duration_minutes IS NOT NULL LIMIT :batch_size
);
