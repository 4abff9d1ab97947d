-- Invites the tenant's administrator: the SQLite variant of ../admin_user.sql.
INSERT INTO users (email, full_name, role, status, invited_at)
VALUES (lower(:admin_email), :admin_name, 'admin', 'invited', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
ON CONFLICT (email) DO NOTHING;
