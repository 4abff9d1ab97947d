-- Indexes reservations by user (SQLite has no concurrent builds, so this is a plain index).
-- no-transaction
CREATE INDEX IF NOT EXISTS reservations_user_id_idx ON reservations (user_id);
