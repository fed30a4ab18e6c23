-- The time of each execution's last event (`ExecutionSummary::updated_at`), kept by
-- every append in the statement that already updates the row, so that the watchdog
-- lists only the open executions idle since before a time.
--
-- Not indexed: every workflow task rewrites it, and changing an indexed column makes
-- each step's update of this row a non-HOT update (a new entry in every index of the
-- table, the GIN one included) for the benefit of a query that runs every half
-- minute. That query finds the open executions through `saga_executions_status` and
-- checks the time on each row, in the database, sending only the idle ones.
ALTER TABLE saga_executions ADD COLUMN updated_at timestamptz;
UPDATE saga_executions x SET updated_at = (
    SELECT e.ts FROM saga_events e
     WHERE e.saga_id = x.saga_id
     ORDER BY e.event_id DESC LIMIT 1
);
