-- The workflow type's default task queue (`#[workflow(task_queue = "..")]`), so that a
-- start without the workflow code (the `saga` CLI, a `SagaClient`) sends the execution
-- where the engine would. NULL: the starter's queue.
ALTER TABLE saga_definitions ADD COLUMN task_queue text;
