-- Creates the invoices table, the amounts billed for each subscription and their payment state.
CREATE TABLE invoices (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    subscription_id uuid        NOT NULL REFERENCES subscriptions (id),
    amount_cents    bigint      NOT NULL CHECK (amount_cents >= 0),
    currency        text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status          text        NOT NULL DEFAULT 'draft'
                                CHECK (status IN ('draft', 'open', 'paid', 'void')),
    issued_at       timestamptz,
    due_at          timestamptz,
    paid_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'paid' OR paid_at IS NOT NULL)
);

CREATE INDEX invoices_subscription_id_idx ON invoices (subscription_id);
CREATE INDEX invoices_status_due_at_idx ON invoices (status, due_at);
