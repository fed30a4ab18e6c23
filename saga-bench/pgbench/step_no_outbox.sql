-- step_event_batch.sql without the outbox: what the outbox adds to a commit.
\set s random(1, 50000)
\set n random(1, 1000000000)
WITH v AS (UPDATE pgb.saga_executions SET version = version + 1, status = COALESCE(NULL::text, status), search_attributes = search_attributes || '{}'::jsonb, updated_at = now() WHERE saga_id = 's' || :s RETURNING 1),
ev AS (INSERT INTO pgb.saga_event_batches SELECT 's' || :s, nextval('pgb.event_ids') * 3, ARRAY['ActivityTaskStarted', 'ActivityTaskCompleted', 'ActivityTaskScheduled'], ARRAY['activity', 'activity', 'activity'], ARRAY[now(), now(), now()], attrs.a::json[], ARRAY[1, 1, 1], ARRAY[false, false, false], ARRAY[false, false, false], ARRAY['trace-0123456789abcdef', 'trace-0123456789abcdef', 'trace-0123456789abcdef'] FROM pgb.attrs WHERE EXISTS (SELECT 1 FROM v))
SELECT EXISTS (SELECT 1 FROM v);
