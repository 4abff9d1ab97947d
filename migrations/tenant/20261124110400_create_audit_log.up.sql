-- Creates the audit_log table, the own trail of the condominium of who did what to which entity.
CREATE TABLE audit_log (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    actor_user_id uuid        REFERENCES users (id) ON DELETE SET NULL,
    action        text        NOT NULL,
    entity        text        NOT NULL,
    entity_id     text,
    occurred_at   timestamptz NOT NULL DEFAULT now(),
    details       jsonb       NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_occurred_at_idx ON audit_log (occurred_at);
CREATE INDEX audit_log_actor_user_id_idx ON audit_log (actor_user_id);
