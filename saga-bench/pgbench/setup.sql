-- The tables a commit writes, as PostgreSQL store migrations leave them, in a schema
-- of their own (`pgb`), plus `saga_events` as it was before migration 0009 (one row
-- per event) and a table for the raw one-row commit.
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS pgb CASCADE;
CREATE SCHEMA pgb;
SET search_path = pgb;
CREATE TABLE raw (v bigint);
-- Event ids ascend, as a saga's do (a random id would land anywhere in the index).
CREATE SEQUENCE event_ids;
CREATE TABLE saga_executions (
    saga_id text COLLATE "C" PRIMARY KEY, version bigint NOT NULL, workflow_type text,
    status text, started_at timestamptz, closed_at timestamptz,
    search_attributes jsonb NOT NULL DEFAULT '{}', updated_at timestamptz
) WITH (fillfactor = 70);
CREATE INDEX ON saga_executions (workflow_type, started_at);
CREATE INDEX ON saga_executions (status, started_at);
CREATE INDEX ON saga_executions (started_at);
CREATE INDEX ON saga_executions USING gin (search_attributes jsonb_path_ops);
CREATE TABLE saga_events (
    saga_id text COLLATE "C" NOT NULL, event_id bigint NOT NULL, event_type text NOT NULL,
    category text NOT NULL, ts timestamptz NOT NULL, attributes json NOT NULL,
    event_version integer NOT NULL, is_reset_point boolean NOT NULL,
    is_retry boolean NOT NULL, trace_id text NOT NULL, PRIMARY KEY (saga_id, event_id)
);
CREATE TABLE saga_event_batches (
    saga_id text COLLATE "C" NOT NULL, first_event_id bigint NOT NULL,
    event_types text[] NOT NULL, categories text[] NOT NULL, timestamps timestamptz[] NOT NULL,
    attributes json[] NOT NULL, event_versions integer[] NOT NULL,
    reset_points boolean[] NOT NULL, retries boolean[] NOT NULL, trace_ids text[] NOT NULL,
    PRIMARY KEY (saga_id, first_event_id)
);
CREATE TABLE saga_outbox (
    saga_id text COLLATE "C" NOT NULL, dedup_id text COLLATE "C" NOT NULL,
    kind text NOT NULL, queue text NOT NULL, payload bytea NOT NULL,
    due_at timestamptz NOT NULL, PRIMARY KEY (saga_id, dedup_id)
);
CREATE INDEX ON saga_outbox (due_at);
-- Many sagas, each with its one task waiting in the outbox, as in a run with many in
-- flight: a script draws one at random, so a saga takes about one step per run of a
-- script. (With a thousand sagas each took hundreds, and the rows they deleted piled
-- up under their keys until vacuum, which made the outbox look dearer than it is.)
INSERT INTO saga_executions
SELECT 's' || g, 1, 'saga-5', 'running', now(), NULL, '{}', now()
  FROM generate_series(1, 50000) g;
INSERT INTO saga_outbox
SELECT 's' || g, 's' || g || '/1', 'activity', 'default', decode(repeat('ab', 300), 'hex'),
       now() + interval '30 s'
  FROM generate_series(1, 50000) g;
-- An outbox layout tried instead of a row per task, not kept (BENCHMARKS.md): one row
-- per saga, its tasks a `jsonb` object keyed by dedup id (`outbox_jsonb.sql`,
-- `batch_jsonb.sql`). `due_at` only moves earlier on a step, so a step's update
-- changes no indexed column (HOT).
CREATE TABLE outbox_jsonb (
    saga_id text COLLATE "C" PRIMARY KEY, tasks jsonb NOT NULL, due_at timestamptz
) WITH (fillfactor = 50);
CREATE INDEX ON outbox_jsonb (due_at);
INSERT INTO outbox_jsonb
SELECT 's' || g,
       jsonb_build_object('s' || g || '/1', jsonb_build_object('kind', 'activity',
           'queue', 'default', 'payload', repeat('ab', 300), 'due', now() + interval '30 s')),
       now() + interval '30 s'
  FROM generate_series(1, 50000) g;
VACUUM ANALYZE saga_executions, saga_outbox, outbox_jsonb;
-- A step's three events' attributes (pgbench reads `:` as a variable, so the JSON is
-- kept here).
CREATE TABLE attrs AS
SELECT ARRAY['{"seq":1,"attempt":1,"identity":"worker-123"}',
             '{"seq":1,"result":{"ok":true,"order":"o-123456"},"activity_type":"step"}',
             '{"seq":2,"activity_type":"step","input":{"order":"o-123456","n":2},"queue":"default","retry":{"max":3}}'
       ] AS a;
