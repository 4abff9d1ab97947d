-- Removes the default condominium settings inserted by the matching up migration.
DELETE FROM condominium_settings
WHERE key IN (
    'timezone',
    'booking_window_days',
    'max_active_reservations_per_resident',
    'cancellation_notice_hours',
    'quiet_hours'
);
