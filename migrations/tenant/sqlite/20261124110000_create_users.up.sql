-- Creates the users table, the residents, managers and administrators of the condominium.
-- Emails are stored lower-cased by the application. Invitation tokens are only ever stored hashed.
CREATE TABLE users (
    id                    TEXT PRIMARY KEY NOT NULL
                               DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))),
    email                 TEXT NOT NULL UNIQUE,
    full_name             TEXT NOT NULL,
    role                  TEXT NOT NULL DEFAULT 'resident'
                               CHECK (role IN ('resident', 'manager', 'admin')),
    status                TEXT NOT NULL DEFAULT 'invited'
                               CHECK (status IN ('invited', 'active', 'disabled')),
    unit                  TEXT,
    phone                 TEXT,
    password_hash         TEXT,
    invitation_token_hash TEXT,
    invited_at            TEXT,
    activated_at          TEXT,
    created_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE UNIQUE INDEX users_invitation_token_hash_key ON users (invitation_token_hash)
    WHERE invitation_token_hash IS NOT NULL;
