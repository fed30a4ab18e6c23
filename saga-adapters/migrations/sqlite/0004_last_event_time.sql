-- The time of each execution's last event (`ExecutionSummary::updated_at`), kept by
-- every append in the statement that already updates the row, so that the watchdog
-- lists only the open executions idle since before a time.
--
-- Not indexed: every workflow task rewrites it, and an index on it would cost each
-- step one more B-tree write for the benefit of a query that runs every half minute.
-- That query finds the open executions through `saga_executions_status` and checks
-- the time on each row, in the database, sending only the idle ones.
ALTER TABLE saga_executions ADD COLUMN updated_at_us INTEGER;
UPDATE saga_executions SET updated_at_us = (
    SELECT e.ts_us FROM saga_events e
     WHERE e.saga_id = saga_executions.saga_id
     ORDER BY e.event_id DESC LIMIT 1
);
