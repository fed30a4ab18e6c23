-- Eight step commits in one statement, as the group commit writes them, with the
-- outbox as now (a row per task). Each client takes sagas of its own (4 at most).
\set s random(0, 12499)
\set n random(1, 1000000000)
WITH b AS (SELECT 's' || (:client_id * 12500 + (:s + g) % 12500 + 1) AS saga, g FROM generate_series(0, 7) g),
vu AS (UPDATE pgb.saga_executions x SET version = x.version + 1, status = COALESCE(NULL::text, x.status), search_attributes = x.search_attributes || '{}'::jsonb, updated_at = now() FROM b WHERE x.saga_id = b.saga RETURNING x.saga_id),
ev AS (INSERT INTO pgb.saga_event_batches SELECT b.saga, nextval('pgb.event_ids') * 3, ARRAY['ActivityTaskStarted', 'ActivityTaskCompleted', 'ActivityTaskScheduled'], ARRAY['activity', 'activity', 'activity'], ARRAY[now(), now(), now()], attrs.a::json[], ARRAY[1, 1, 1], ARRAY[false, false, false], ARRAY[false, false, false], ARRAY['trace-0123456789abcdef', 'trace-0123456789abcdef', 'trace-0123456789abcdef'] FROM b, pgb.attrs WHERE b.saga IN (SELECT saga_id FROM vu)),
od AS (DELETE FROM pgb.saga_outbox o WHERE o.saga_id IN (SELECT saga_id FROM vu) AND (o.saga_id, o.dedup_id) IN (SELECT b.saga, b.saga || '/1' FROM b)),
oi AS (INSERT INTO pgb.saga_outbox SELECT b.saga, b.saga || '/1', 'activity', 'default', decode(repeat('ab', 300), 'hex'), now() + interval '30 s' FROM b WHERE b.saga IN (SELECT saga_id FROM vu) ON CONFLICT DO NOTHING)
SELECT count(*) FROM vu;
