-- Creates the condominium_settings table, the key and JSON value settings of the condominium.
CREATE TABLE condominium_settings (
    key        text        PRIMARY KEY,
    value      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
