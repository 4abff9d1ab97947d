-- Inserts the default condominium settings, keeping any value the condominium already has.
INSERT OR IGNORE INTO condominium_settings (key, value) VALUES
    ('timezone', '"UTC"'),
    ('booking_window_days', '60'),
    ('max_active_reservations_per_resident', '2'),
    ('cancellation_notice_hours', '24'),
    ('quiet_hours', '{"start": "22:00", "end": "08:00"}');
