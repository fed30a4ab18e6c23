-- Workflow definitions, registered by workers so that tools without the workflow code
-- (the `saga` CLI) can start, describe and draw executions. One row per
-- (workflow_type, fingerprint): a new version of the code adds a row, and executions
-- started under the old one still find theirs.
CREATE TABLE saga_definitions (
    workflow_type text        NOT NULL,
    fingerprint   text        NOT NULL,
    -- The checkpoint table: [{id, variant, line, kind, awaits}].
    checkpoints   jsonb       NOT NULL,
    -- Mermaid stateDiagram-v2.
    diagram       text        NOT NULL,
    timeout_ms    bigint,
    registered_at timestamptz NOT NULL,
    PRIMARY KEY (workflow_type, fingerprint)
);
