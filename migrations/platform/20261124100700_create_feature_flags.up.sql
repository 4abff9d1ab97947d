-- Creates the feature_flags table, the catalogue of feature flags and their default state.
CREATE TABLE feature_flags (
    key                text        PRIMARY KEY,
    description        text        NOT NULL,
    enabled_by_default boolean     NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
