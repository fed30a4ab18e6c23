-- step_event_batch.sql with the outbox as one row per saga: the commit removes its
-- settled tasks (here: the saga's one task) and appends the new one, in SQL.
\set s random(1, 1000)
\set n random(1, 1000000000)
WITH v AS (UPDATE pgb.saga_executions SET version = version + 1, status = COALESCE(NULL::text, status), search_attributes = search_attributes || '{}'::jsonb, updated_at = now() WHERE saga_id = 's' || :s RETURNING 1),
ev AS (INSERT INTO pgb.saga_event_batches SELECT 's' || :s, nextval('pgb.event_ids') * 3, ARRAY['ActivityTaskStarted', 'ActivityTaskCompleted', 'ActivityTaskScheduled'], ARRAY['activity', 'activity', 'activity'], ARRAY[now(), now(), now()], attrs.a::json[], ARRAY[1, 1, 1], ARRAY[false, false, false], ARRAY[false, false, false], ARRAY['trace-0123456789abcdef', 'trace-0123456789abcdef', 'trace-0123456789abcdef'] FROM pgb.attrs WHERE EXISTS (SELECT 1 FROM v)),
ou AS (INSERT INTO pgb.outbox_per_saga AS x SELECT 's' || :s, ARRAY['d' || :n], ARRAY['activity'], ARRAY['default'], ARRAY[decode(repeat('ab', 300), 'hex')], ARRAY[now() + interval '30 s'], now() + interval '30 s' WHERE EXISTS (SELECT 1 FROM v)
  ON CONFLICT (saga_id) DO UPDATE SET (dedup_ids, kinds, queues, payloads, dues, due_at) = (
    SELECT coalesce(array_agg(k.id ORDER BY k.o), '{}'), coalesce(array_agg(k.kind ORDER BY k.o), '{}'), coalesce(array_agg(k.queue ORDER BY k.o), '{}'), coalesce(array_agg(k.payload ORDER BY k.o), '{}'), coalesce(array_agg(k.due ORDER BY k.o), '{}'), min(k.due)
      FROM (SELECT t.id, t.kind, t.queue, t.payload, t.due, t.o FROM unnest(x.dedup_ids, x.kinds, x.queues, x.payloads, x.dues) WITH ORDINALITY AS t(id, kind, queue, payload, due, o) WHERE t.id <> ALL(x.dedup_ids)
            UNION ALL
            SELECT t.id, t.kind, t.queue, t.payload, t.due, t.o + 1000000 FROM unnest(EXCLUDED.dedup_ids, EXCLUDED.kinds, EXCLUDED.queues, EXCLUDED.payloads, EXCLUDED.dues) WITH ORDINALITY AS t(id, kind, queue, payload, due, o) WHERE t.id <> ALL(x.dedup_ids)) k))
SELECT EXISTS (SELECT 1 FROM v);
