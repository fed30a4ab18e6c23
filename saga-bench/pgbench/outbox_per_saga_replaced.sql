-- step_event_batch.sql with the outbox as one row per saga whose tasks the commit
-- overwrites: cheap, but wrong (it drops tasks that others wrote to the saga's row).
\set s random(1, 1000)
\set n random(1, 1000000000)
WITH v AS (UPDATE pgb.saga_executions SET version = version + 1, status = COALESCE(NULL::text, status), search_attributes = search_attributes || '{}'::jsonb, updated_at = now() WHERE saga_id = 's' || :s RETURNING 1),
ev AS (INSERT INTO pgb.saga_event_batches SELECT 's' || :s, nextval('pgb.event_ids') * 3, ARRAY['ActivityTaskStarted', 'ActivityTaskCompleted', 'ActivityTaskScheduled'], ARRAY['activity', 'activity', 'activity'], ARRAY[now(), now(), now()], attrs.a::json[], ARRAY[1, 1, 1], ARRAY[false, false, false], ARRAY[false, false, false], ARRAY['trace-0123456789abcdef', 'trace-0123456789abcdef', 'trace-0123456789abcdef'] FROM pgb.attrs WHERE EXISTS (SELECT 1 FROM v)),
ou AS (INSERT INTO pgb.outbox_per_saga SELECT 's' || :s, ARRAY['d' || :n], ARRAY['activity'], ARRAY['default'], ARRAY[decode(repeat('ab', 300), 'hex')], ARRAY[now() + interval '30 s'], now() + interval '30 s' WHERE EXISTS (SELECT 1 FROM v) ON CONFLICT (saga_id) DO UPDATE SET dedup_ids = EXCLUDED.dedup_ids, kinds = EXCLUDED.kinds, queues = EXCLUDED.queues, payloads = EXCLUDED.payloads, dues = EXCLUDED.dues, due_at = EXCLUDED.due_at)
SELECT EXISTS (SELECT 1 FROM v);
