-- Adds audit_events.content_digest and audit_events.conflicts_with, so that an event id reused for
-- different content is stored and flagged instead of silently dropped. content_digest is the
-- SHA-256 of the event's type, source, subject and data as received (NULL on rows stored before
-- this migration); a redelivery has the same id and digest and is stored once. conflicts_with is
-- set on a conflict row: an event whose id was already stored with another digest, kept under an
-- id derived from that id and its own digest. Both columns are nullable without a default, so
-- adding them rewrites nothing.
ALTER TABLE audit_events
    ADD COLUMN content_digest bytea,
    ADD COLUMN conflicts_with uuid;
