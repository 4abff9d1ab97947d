-- Drops the condominium_settings table.
DROP TABLE condominium_settings;
