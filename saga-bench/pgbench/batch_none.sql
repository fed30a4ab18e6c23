-- batch_now.sql without the outbox.
\set s random(0, 12499)
\set n random(1, 1000000000)
WITH b AS (SELECT 's' || (:client_id * 12500 + (:s + g) % 12500 + 1) AS saga, g FROM generate_series(0, 7) g),
vu AS (UPDATE pgb.saga_executions x SET version = x.version + 1, status = COALESCE(NULL::text, x.status), search_attributes = x.search_attributes || '{}'::jsonb, updated_at = now() FROM b WHERE x.saga_id = b.saga RETURNING x.saga_id),
ev AS (INSERT INTO pgb.saga_event_batches SELECT b.saga, nextval('pgb.event_ids') * 3, ARRAY['ActivityTaskStarted', 'ActivityTaskCompleted', 'ActivityTaskScheduled'], ARRAY['activity', 'activity', 'activity'], ARRAY[now(), now(), now()], attrs.a::json[], ARRAY[1, 1, 1], ARRAY[false, false, false], ARRAY[false, false, false], ARRAY['trace-0123456789abcdef', 'trace-0123456789abcdef', 'trace-0123456789abcdef'] FROM b, pgb.attrs WHERE b.saga IN (SELECT saga_id FROM vu))
SELECT count(*) FROM vu;
