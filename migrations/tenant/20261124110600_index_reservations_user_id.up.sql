-- Indexes reservations by user without blocking writes, clearing first any invalid leftover of an interrupted build.
-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS reservations_user_id_idx;
CREATE INDEX CONCURRENTLY IF NOT EXISTS reservations_user_id_idx ON reservations (user_id);
