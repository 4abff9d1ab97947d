-- Drops the embeddings table.
DROP TABLE embeddings;
