-- Creates the plans table, the catalogue of commercial plans with their monthly price and limits.
CREATE TABLE plans (
    id                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    code                text        NOT NULL UNIQUE,
    name                text        NOT NULL,
    monthly_price_cents bigint      NOT NULL CHECK (monthly_price_cents >= 0),
    currency            text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    max_units           integer     CHECK (max_units > 0),
    max_spaces          integer     CHECK (max_spaces > 0),
    active              boolean     NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
