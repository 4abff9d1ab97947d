-- Creates the subscriptions table, linking each tenant to the plan it pays for and its billing period.
CREATE TABLE subscriptions (
    id                   TEXT PRIMARY KEY NOT NULL
                              DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))),
    tenant_id            TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    plan_id              TEXT NOT NULL REFERENCES plans (id),
    status               TEXT NOT NULL DEFAULT 'active'
                              CHECK (status IN ('trialing', 'active', 'past_due', 'cancelled', 'expired')),
    current_period_start TEXT NOT NULL,
    current_period_end   TEXT NOT NULL,
    cancel_at            TEXT,
    created_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK (julianday(current_period_start) IS NOT NULL
           AND julianday(current_period_end) > julianday(current_period_start))
);

CREATE INDEX subscriptions_tenant_id_idx ON subscriptions (tenant_id);
CREATE INDEX subscriptions_plan_id_idx ON subscriptions (plan_id);
