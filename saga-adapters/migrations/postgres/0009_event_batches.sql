-- Histories stored a commit at a time: one row holds the events one commit appended,
-- consecutive from `first_event_id`, as parallel arrays (like Temporal's history
-- nodes). Why: every row costs PostgreSQL a heap insert, an index insert and their
-- WAL on the hottest statement, and a workflow step appends two or three events. With
-- group commit a statement carries dozens of commits, so those rows add up: in eight
-- paired saga-5 runs PostgreSQL's CPU per step fell by 7-19 % (BENCHMARKS.md). A lone
-- commit gains nothing (`saga-bench/pgbench`), and the rows take as much space as
-- before. Events are never updated, and every read takes a saga's events in order from
-- some event on, so nothing needs them one row each.
--
-- This migration copies every stored event once: on a large store it takes a while.
-- Meanwhile the old table takes no writes (the lock below), so that no event an
-- engine of an earlier version commits during the copy is left behind; such an engine
-- fails to write afterwards (the view takes no inserts) rather than lose anything.
--
-- The key `(saga_id, first_event_id)` still makes a second writer of the same events
-- fail, behind the version check on `saga_executions` in the same statement. The
-- arrays of a row are all as long as its event count; a reader that finds otherwise
-- reports the row as corrupt and changes nothing.
CREATE TABLE saga_event_batches (
    saga_id        text COLLATE "C" NOT NULL,
    first_event_id bigint           NOT NULL,
    event_types    text[]           NOT NULL,
    categories     text[]           NOT NULL,
    timestamps     timestamptz[]    NOT NULL,
    attributes     json[]           NOT NULL,
    event_versions integer[]        NOT NULL,
    reset_points   boolean[]        NOT NULL,
    retries        boolean[]        NOT NULL,
    trace_ids      text[]           NOT NULL,
    PRIMARY KEY (saga_id, first_event_id)
);

-- What is there already: each event a batch of its own.
LOCK TABLE saga_events IN EXCLUSIVE MODE;
INSERT INTO saga_event_batches
SELECT saga_id, event_id, ARRAY[event_type], ARRAY[category], ARRAY[ts],
       ARRAY[attributes], ARRAY[event_version], ARRAY[is_reset_point], ARRAY[is_retry],
       ARRAY[trace_id]
  FROM saga_events;

DROP TABLE saga_events;

-- One row per event, as the table was, for people and tools that query histories
-- (read only).
CREATE VIEW saga_events AS
SELECT b.saga_id, b.first_event_id + e.i - 1 AS event_id, e.event_type, e.category, e.ts,
       e.attributes, e.event_version, e.is_reset_point, e.is_retry, e.trace_id
  FROM saga_event_batches b,
       unnest(b.event_types, b.categories, b.timestamps, b.attributes, b.event_versions,
              b.reset_points, b.retries, b.trace_ids)
       WITH ORDINALITY AS e(event_type, category, ts, attributes, event_version,
                            is_reset_point, is_retry, trace_id, i);
