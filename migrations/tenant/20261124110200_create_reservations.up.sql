-- Creates the reservations table, the bookings of a space by a user for a time range.
CREATE TABLE reservations (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    space_id   uuid        NOT NULL REFERENCES spaces (id),
    user_id    uuid        NOT NULL REFERENCES users (id),
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    status     text        NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'confirmed', 'cancelled')),
    guests     integer     NOT NULL DEFAULT 0 CHECK (guests >= 0),
    notes      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);

CREATE INDEX reservations_space_id_starts_at_idx ON reservations (space_id, starts_at);
