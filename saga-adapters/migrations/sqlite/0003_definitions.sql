-- Workflow definitions, registered by workers so that tools without the workflow code
-- (the `saga` CLI) can start, describe and draw executions. One row per
-- (workflow_type, fingerprint): a new version of the code adds a row, and executions
-- started under the old one still find theirs.
CREATE TABLE saga_definitions (
    workflow_type    TEXT    NOT NULL,
    fingerprint      TEXT    NOT NULL,
    -- The checkpoint table, a JSON array of {id, variant, line, kind, awaits}.
    checkpoints      TEXT    NOT NULL,
    -- Mermaid stateDiagram-v2.
    diagram          TEXT    NOT NULL,
    timeout_ms       INTEGER,
    registered_at_us INTEGER NOT NULL,
    PRIMARY KEY (workflow_type, fingerprint)
);
