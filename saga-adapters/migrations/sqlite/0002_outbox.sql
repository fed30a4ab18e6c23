-- The transactional outbox: tasks written with the events that caused them, until the
-- commit that records their result (or closes the execution) settles them. The
-- reconciler claims rows whose `due_at_us` passed and moves it forward by its lease.
CREATE TABLE saga_outbox (
    saga_id   TEXT    NOT NULL,
    dedup_id  TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    queue     TEXT    NOT NULL,
    payload   BLOB    NOT NULL,
    due_at_us INTEGER NOT NULL,
    PRIMARY KEY (saga_id, dedup_id)
) WITHOUT ROWID;
CREATE INDEX saga_outbox_due ON saga_outbox (due_at_us);
