-- Drops dlq_replays.
DROP TABLE dlq_replays;
