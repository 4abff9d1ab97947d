-- Drops the feature_flags table.
DROP TABLE feature_flags;
