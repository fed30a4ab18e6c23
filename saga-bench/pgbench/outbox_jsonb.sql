-- step_event_batch.sql with the outbox as one jsonb row per saga (table outbox_jsonb):
-- the settled task's key removed and the new one added; each saga has one task here,
-- as in a saga-5 step. Tried instead of a row per task, not kept (BENCHMARKS.md).
\set s random(1, 50000)
\set n random(1, 1000000000)
WITH v AS (UPDATE pgb.saga_executions SET version = version + 1, status = COALESCE(NULL::text, status), search_attributes = search_attributes || '{}'::jsonb, updated_at = now() WHERE saga_id = 's' || :s RETURNING 1),
ev AS (INSERT INTO pgb.saga_event_batches SELECT 's' || :s, nextval('pgb.event_ids') * 3, ARRAY['ActivityTaskStarted', 'ActivityTaskCompleted', 'ActivityTaskScheduled'], ARRAY['activity', 'activity', 'activity'], ARRAY[now(), now(), now()], attrs.a::json[], ARRAY[1, 1, 1], ARRAY[false, false, false], ARRAY[false, false, false], ARRAY['trace-0123456789abcdef', 'trace-0123456789abcdef', 'trace-0123456789abcdef'] FROM pgb.attrs WHERE EXISTS (SELECT 1 FROM v)),
ou AS (INSERT INTO pgb.outbox_jsonb AS x SELECT 's' || :s, jsonb_build_object('s' || CAST(:s AS text) || '/1', jsonb_build_object('kind', 'activity', 'queue', 'default', 'payload', repeat('ab', 300), 'due', now() + interval '30 s')), now() + interval '30 s' WHERE EXISTS (SELECT 1 FROM v)
  ON CONFLICT (saga_id) DO UPDATE SET tasks = (x.tasks - ('s' || CAST(:s AS text) || '/1')) || EXCLUDED.tasks, due_at = LEAST(x.due_at, EXCLUDED.due_at))
SELECT EXISTS (SELECT 1 FROM v);
