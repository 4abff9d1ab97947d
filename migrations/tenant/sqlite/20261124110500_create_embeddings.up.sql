-- Creates the embeddings table, AI embeddings of domain entities stored as little-endian float32 blobs.
-- No vector extension is assumed, so similarity search is done by the application.
CREATE TABLE embeddings (
    id          TEXT    PRIMARY KEY NOT NULL
                        DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))),
    entity_type TEXT    NOT NULL,
    entity_id   TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    dimensions  INTEGER NOT NULL CHECK (dimensions > 0),
    embedding   BLOB    NOT NULL,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (entity_type, entity_id, model),
    CHECK (typeof(embedding) = 'blob' AND length(embedding) = 4 * dimensions)
);
