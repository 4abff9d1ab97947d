-- Creates the feature_flags table, the catalogue of feature flags and their default state.
CREATE TABLE feature_flags (
    key                TEXT    PRIMARY KEY NOT NULL,
    description        TEXT    NOT NULL,
    enabled_by_default INTEGER NOT NULL DEFAULT 0 CHECK (enabled_by_default IN (0, 1)),
    created_at         TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at         TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
