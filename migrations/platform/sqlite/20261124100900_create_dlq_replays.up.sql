-- Creates dlq_replays, the record of dead letters replayed by operators, so that a replay run
-- again after an interruption skips what an earlier run already republished.
CREATE TABLE dlq_replays (
    replay_key  TEXT PRIMARY KEY NOT NULL,
    queue       TEXT NOT NULL,
    message_id  TEXT,
    event_type  TEXT,
    tenant_id   TEXT,
    replayed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX dlq_replays_replayed_at_idx ON dlq_replays (replayed_at);
