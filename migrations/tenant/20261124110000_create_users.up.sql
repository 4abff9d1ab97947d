-- Creates the users table, the residents, managers and administrators of the condominium.
-- Emails are stored lower-cased by the application. Invitation tokens are only ever stored hashed.
CREATE TABLE users (
    id                    uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    email                 text        NOT NULL UNIQUE,
    full_name             text        NOT NULL,
    role                  text        NOT NULL DEFAULT 'resident'
                                      CHECK (role IN ('resident', 'manager', 'admin')),
    status                text        NOT NULL DEFAULT 'invited'
                                      CHECK (status IN ('invited', 'active', 'disabled')),
    unit                  text,
    phone                 text,
    password_hash         text,
    invitation_token_hash text,
    invited_at            timestamptz,
    activated_at          timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_invitation_token_hash_key ON users (invitation_token_hash)
    WHERE invitation_token_hash IS NOT NULL;
