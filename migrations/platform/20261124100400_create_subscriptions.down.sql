-- Drops the subscriptions table and its indexes.
DROP TABLE subscriptions;
