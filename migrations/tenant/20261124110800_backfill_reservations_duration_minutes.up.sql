-- Fills reservations duration_minutes from the reservation time range, in batches of rows still missing it.
-- batch-size: 500
UPDATE reservations
SET duration_minutes = round(extract(epoch FROM (ends_at - starts_at)) / 60)::integer
WHERE id IN (
    SELECT id FROM reservations WHERE duration_minutes IS NULL LIMIT :batch_size
);
