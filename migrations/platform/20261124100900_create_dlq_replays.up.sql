-- Creates dlq_replays, the record of dead letters replayed by operators, so that a replay run
-- again after an interruption skips what an earlier run already republished.
CREATE TABLE dlq_replays (
    replay_key  text        PRIMARY KEY,
    queue       text        NOT NULL,
    message_id  text,
    event_type  text,
    tenant_id   text,
    replayed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX dlq_replays_replayed_at_idx ON dlq_replays (replayed_at);
