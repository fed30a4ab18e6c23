-- The time of each execution's last event (`ExecutionSummary::updated_at`), kept by
-- every append, so that the watchdog's stall detector lists only the open executions
-- idle since before a time through an index, instead of reading every open history.
ALTER TABLE saga_executions ADD COLUMN updated_at_us INTEGER;
UPDATE saga_executions SET updated_at_us = (
    SELECT e.ts_us FROM saga_events e
     WHERE e.saga_id = saga_executions.saga_id
     ORDER BY e.event_id DESC LIMIT 1
);
CREATE INDEX saga_executions_status_updated ON saga_executions (status, updated_at_us);
