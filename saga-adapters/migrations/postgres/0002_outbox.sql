-- The transactional outbox: tasks written with the events that caused them, until the
-- commit that records their result (or closes the execution) settles them. The
-- reconciler claims rows whose `due_at` passed (FOR UPDATE SKIP LOCKED) and moves it
-- forward by its lease.
CREATE TABLE saga_outbox (
    saga_id  text        NOT NULL,
    dedup_id text        NOT NULL,
    kind     text        NOT NULL,
    queue    text        NOT NULL,
    payload  bytea       NOT NULL,
    due_at   timestamptz NOT NULL,
    PRIMARY KEY (saga_id, dedup_id)
);
CREATE INDEX saga_outbox_due ON saga_outbox (due_at);
