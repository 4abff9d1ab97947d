-- Creates the spaces table, the bookable common areas such as the party room or the barbecue area.
CREATE TABLE spaces (
    id                TEXT    PRIMARY KEY NOT NULL
                              DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))),
    name              TEXT    NOT NULL UNIQUE,
    description       TEXT,
    capacity          INTEGER CHECK (capacity > 0),
    requires_approval INTEGER NOT NULL DEFAULT 0 CHECK (requires_approval IN (0, 1)),
    opens_at          TEXT    CHECK (opens_at IS NULL OR time(opens_at) IS NOT NULL),
    closes_at         TEXT    CHECK (closes_at IS NULL OR time(closes_at) IS NOT NULL),
    active            INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK ((opens_at IS NULL) = (closes_at IS NULL))
);
