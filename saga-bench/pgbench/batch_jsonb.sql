-- batch_now.sql with the outbox as one jsonb row per saga: an UPDATE of the sagas
-- that have a row, an INSERT for the others. Tried, not kept (BENCHMARKS.md).
\set s random(0, 12499)
\set n random(1, 1000000000)
WITH b AS (SELECT 's' || (:client_id * 12500 + (:s + g) % 12500 + 1) AS saga, g FROM generate_series(0, 7) g),
vu AS (UPDATE pgb.saga_executions x SET version = x.version + 1, status = COALESCE(NULL::text, x.status), search_attributes = x.search_attributes || '{}'::jsonb, updated_at = now() FROM b WHERE x.saga_id = b.saga RETURNING x.saga_id),
ev AS (INSERT INTO pgb.saga_event_batches SELECT b.saga, nextval('pgb.event_ids') * 3, ARRAY['ActivityTaskStarted', 'ActivityTaskCompleted', 'ActivityTaskScheduled'], ARRAY['activity', 'activity', 'activity'], ARRAY[now(), now(), now()], attrs.a::json[], ARRAY[1, 1, 1], ARRAY[false, false, false], ARRAY[false, false, false], ARRAY['trace-0123456789abcdef', 'trace-0123456789abcdef', 'trace-0123456789abcdef'] FROM b, pgb.attrs WHERE b.saga IN (SELECT saga_id FROM vu)),
n AS (SELECT b.saga, jsonb_build_object(b.saga || '/1', jsonb_build_object('kind', 'activity', 'queue', 'default', 'payload', repeat('ab', 300), 'due', now() + interval '30 s')) AS tasks FROM b WHERE b.saga IN (SELECT saga_id FROM vu)),
ou AS (UPDATE pgb.outbox_jsonb x SET tasks = n.tasks || (x.tasks - (n.saga || '/1')), due_at = LEAST(x.due_at, now() + interval '30 s') FROM n WHERE x.saga_id = n.saga RETURNING x.saga_id),
oj AS (INSERT INTO pgb.outbox_jsonb SELECT n.saga, n.tasks, now() + interval '30 s' FROM n WHERE n.saga NOT IN (SELECT saga_id FROM ou) ON CONFLICT (saga_id) DO NOTHING)
SELECT count(*) FROM vu;
