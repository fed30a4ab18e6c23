-- Saga Engine store, PostgreSQL. Tables are created in the first schema of the
-- connection's search_path.

-- Histories, keyed (saga_id, event_id): a stale writer fails on this key (or, first, on
-- the version check of saga_executions in the same statement) and writes nothing.
CREATE TABLE saga_events (
    saga_id        text        NOT NULL,
    event_id       bigint      NOT NULL,
    event_type     text        NOT NULL,
    category       text        NOT NULL,
    ts             timestamptz NOT NULL,
    attributes     jsonb       NOT NULL,
    event_version  integer     NOT NULL,
    is_reset_point boolean     NOT NULL,
    is_retry       boolean     NOT NULL,
    trace_id       text        NOT NULL,
    PRIMARY KEY (saga_id, event_id)
);

-- One row per history: its version (the next event id, checked by every append) and
-- the listing summary. `workflow_type` is NULL for a history that does not start with
-- WorkflowExecutionStarted: such a history has a version but is not listed.
CREATE TABLE saga_executions (
    saga_id           text PRIMARY KEY,
    version           bigint NOT NULL,
    workflow_type     text,
    status            text,
    started_at        timestamptz,
    closed_at         timestamptz,
    search_attributes jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX saga_executions_type ON saga_executions (workflow_type, started_at);
CREATE INDEX saga_executions_status ON saga_executions (status, started_at);
CREATE INDEX saga_executions_started ON saga_executions (started_at);
CREATE INDEX saga_executions_search ON saga_executions USING gin (search_attributes jsonb_path_ops);

CREATE TABLE saga_snapshots (
    saga_id       text        NOT NULL,
    last_event_id bigint      NOT NULL,
    codec         text        NOT NULL,
    state         bytea       NOT NULL,
    checksum      text,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (saga_id, last_event_id)
);

-- Durable timers, claimed with FOR UPDATE SKIP LOCKED; a claim sets `claimed_until`,
-- and an expired claim can be taken again.
CREATE TABLE saga_timers (
    timer_id      text PRIMARY KEY,
    saga_id       text        NOT NULL,
    kind          text        NOT NULL,
    fire_at       timestamptz NOT NULL,
    attributes    jsonb       NOT NULL,
    claimed_until timestamptz
);
CREATE INDEX saga_timers_fire_at ON saga_timers (fire_at);
