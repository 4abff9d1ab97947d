-- Removes the index of reservations by user.
-- no-transaction
DROP INDEX IF EXISTS reservations_user_id_idx;
