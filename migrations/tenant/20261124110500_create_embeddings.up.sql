-- Creates the embeddings table, AI embeddings of domain entities stored as plain float4 arrays.
-- No vector extension is assumed, so similarity search is done by the application.
CREATE TABLE embeddings (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    entity_type text        NOT NULL,
    entity_id   uuid        NOT NULL,
    model       text        NOT NULL,
    dimensions  integer     NOT NULL CHECK (dimensions > 0),
    embedding   real[]      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (entity_type, entity_id, model),
    CHECK (array_ndims(embedding) = 1 AND cardinality(embedding) = dimensions)
);
