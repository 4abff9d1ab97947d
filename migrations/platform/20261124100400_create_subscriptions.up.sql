-- Creates the subscriptions table, linking each tenant to the plan it pays for and its billing period.
CREATE TABLE subscriptions (
    id                   uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    plan_id              uuid        NOT NULL REFERENCES plans (id),
    status               text        NOT NULL DEFAULT 'active'
                                     CHECK (status IN ('trialing', 'active', 'past_due', 'cancelled', 'expired')),
    current_period_start timestamptz NOT NULL,
    current_period_end   timestamptz NOT NULL,
    cancel_at            timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (current_period_end > current_period_start)
);

CREATE INDEX subscriptions_tenant_id_idx ON subscriptions (tenant_id);
CREATE INDEX subscriptions_plan_id_idx ON subscriptions (plan_id);
