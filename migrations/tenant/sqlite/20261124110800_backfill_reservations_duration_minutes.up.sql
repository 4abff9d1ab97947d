-- Fills reservations duration_minutes from the reservation time range, in batches of rows still missing it.
-- batch-size: 500
UPDATE reservations
SET duration_minutes = CAST(round((julianday(ends_at) - julianday(starts_at)) * 1440) AS INTEGER)
WHERE id IN (
    SELECT id FROM reservations WHERE duration_minutes IS NULL LIMIT :batch_size
);
