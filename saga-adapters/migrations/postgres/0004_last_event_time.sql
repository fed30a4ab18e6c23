-- The time of each execution's last event (`ExecutionSummary::updated_at`), kept by
-- every append, so that the watchdog's stall detector lists only the open executions
-- idle since before a time through an index, instead of reading every open history.
ALTER TABLE saga_executions ADD COLUMN updated_at timestamptz;
UPDATE saga_executions x SET updated_at = (
    SELECT e.ts FROM saga_events e
     WHERE e.saga_id = x.saga_id
     ORDER BY e.event_id DESC LIMIT 1
);
CREATE INDEX saga_executions_status_updated ON saga_executions (status, updated_at);
