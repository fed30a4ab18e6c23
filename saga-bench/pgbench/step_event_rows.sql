-- One step-like commit (see setup.sql): the saga row's version update, a step's three
-- events, and the outbox: the saga's settled task's row removed (each saga here has at
-- most one), the next one's added.
\set s random(1, 50000)
\set n random(1, 1000000000)
WITH v AS (UPDATE pgb.saga_executions SET version = version + 1, status = COALESCE(NULL::text, status), search_attributes = search_attributes || '{}'::jsonb, updated_at = now() WHERE saga_id = 's' || :s RETURNING 1),
ev AS (INSERT INTO pgb.saga_events SELECT 's' || :s, nextval('pgb.event_ids') * 3 + e.i - 1, e.ty, 'activity', now(), e.a::json, 1, false, false, 'trace-0123456789abcdef' FROM pgb.attrs, unnest(ARRAY['ActivityTaskStarted', 'ActivityTaskCompleted', 'ActivityTaskScheduled'], attrs.a) WITH ORDINALITY AS e(ty, a, i) WHERE EXISTS (SELECT 1 FROM v)),
od AS (DELETE FROM pgb.saga_outbox WHERE saga_id = 's' || :s AND EXISTS (SELECT 1 FROM v)),
oi AS (INSERT INTO pgb.saga_outbox SELECT 's' || :s, 'd' || :n, 'activity', 'default', decode(repeat('ab', 300), 'hex'), now() + interval '30 s' WHERE EXISTS (SELECT 1 FROM v) ON CONFLICT DO NOTHING)
SELECT EXISTS (SELECT 1 FROM v);
