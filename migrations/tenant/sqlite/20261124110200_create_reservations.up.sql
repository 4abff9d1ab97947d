-- Creates the reservations table, the bookings of a space by a user for a time range.
CREATE TABLE reservations (
    id         TEXT    PRIMARY KEY NOT NULL
                       DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))),
    space_id   TEXT    NOT NULL REFERENCES spaces (id),
    user_id    TEXT    NOT NULL REFERENCES users (id),
    starts_at  TEXT    NOT NULL,
    ends_at    TEXT    NOT NULL,
    status     TEXT    NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'confirmed', 'cancelled')),
    guests     INTEGER NOT NULL DEFAULT 0 CHECK (guests >= 0),
    notes      TEXT,
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK (julianday(starts_at) IS NOT NULL AND julianday(ends_at) > julianday(starts_at))
);

CREATE INDEX reservations_space_id_starts_at_idx ON reservations (space_id, starts_at);
