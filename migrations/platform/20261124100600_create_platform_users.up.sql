-- Creates the platform_users table, the staff accounts of the SaaS operator (identity only, no passwords).
CREATE TABLE platform_users (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    email        text        NOT NULL UNIQUE,
    display_name text        NOT NULL,
    role         text        NOT NULL DEFAULT 'viewer'
                             CHECK (role IN ('admin', 'sre', 'support', 'billing', 'viewer')),
    disabled_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
