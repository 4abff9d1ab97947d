-- Creates the spaces table, the bookable common areas such as the party room or the barbecue area.
CREATE TABLE spaces (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name              text        NOT NULL UNIQUE,
    description       text,
    capacity          integer     CHECK (capacity > 0),
    requires_approval boolean     NOT NULL DEFAULT false,
    opens_at          time,
    closes_at         time,
    active            boolean     NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((opens_at IS NULL) = (closes_at IS NULL))
);
