-- Removes the index of reservations by user without blocking writes.
-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS reservations_user_id_idx;
