-- Invites the tenant's administrator. The provisioner's admin_user step runs this file in every
-- new tenant (its schema is the only entry of the search path), after the seeds, in one
-- transaction, with the registration's values bound as parameters (see
-- docs/MIGRATION_FORMAT.md, "The admin-user script"). Status invited, no password and no
-- invitation token: the application issues the invitation. Emails are stored lower-cased.
-- Running it again (a redelivered registration) finds the email taken and adds nothing.
INSERT INTO users (email, full_name, role, status, invited_at)
VALUES (lower(:admin_email), :admin_name, 'admin', 'invited', now())
ON CONFLICT (email) DO NOTHING;
