//! The OpenAPI 3.0 document of the REST API, written by hand next to the routes it
//! describes (the runtime's types carry no schema derive, and the document is small).
//! CI checks it against the running server with schemathesis
//! (`saga-cli/tests/api/check_api.py`); `tests/serve.rs` checks that every route is in it.

use serde_json::{json, Value};

use crate::error::Code;

/// The document; the dead-letter paths only when the server has a task queue.
pub(crate) fn document(dead_letters: bool) -> Value {
    let mut paths = json!({
        "/executions": {
            "get": {
                "operationId": "listExecutions",
                "summary": "List executions, oldest start first (as `saga list`)",
                "parameters": [
                    query("type", "Only this workflow type.", json!({"type": "string"})),
                    query("status", "Only this status (case-insensitive).",
                          json!({"type": "string", "enum": statuses()})),
                    query("since", "Started at or after: RFC 3339, a date (`2026-01-15`) or an age (`90s`, `15m`, `2h`, `7d`).",
                          time_filter()),
                    query("until", "Started before (same forms as `since`).", time_filter()),
                    {
                        "name": "attr", "in": "query", "required": false,
                        "description": "A search attribute that must equal VALUE (JSON, or else a string), as `KEY=VALUE`; repeatable.",
                        "style": "form", "explode": true,
                        "schema": {"type": "array", "items": {"type": "string", "pattern": "="}}
                    },
                    query("limit", "At most this many.",
                          json!({"type": "integer", "minimum": 0})),
                ],
                "responses": responses(ok("The executions.", json!({"type": "array", "items": schema("ExecutionSummary")})), &[400]),
            },
            "post": {
                "operationId": "startExecution",
                "summary": "Start an execution of a registered workflow type (as `saga start`)",
                "requestBody": body("StartRequest"),
                "responses": responses(json!({"201": {
                    "description": "Started; a worker runs it.",
                    "headers": {"Location": {"description": "The execution's URL.", "schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": schema("Started")}}
                }}), &[400, 404, 409]),
            }
        },
        "/executions/{id}": {
            "get": {
                "operationId": "describeExecution",
                "summary": "What an execution is doing now (as `saga show`)",
                "parameters": [id()],
                "responses": responses(ok("The execution.", schema("ExecutionDescription")), &[400, 404]),
            }
        },
        "/executions/{id}/history": {
            "get": {
                "operationId": "executionHistory",
                "summary": "An execution's history (as `saga history`)",
                "parameters": [id()],
                "responses": responses(ok("Its events, oldest first.", json!({"type": "array", "items": schema("HistoryEvent")})), &[400, 404]),
            }
        },
        "/executions/{id}/diagram": {
            "get": {
                "operationId": "executionDiagram",
                "summary": "The execution's Mermaid diagram, where it is now highlighted (as `saga diagram ID`)",
                "parameters": [id()],
                "responses": responses(ok("The diagram.", schema("Diagram")), &[400, 404]),
            }
        },
        "/executions/{id}/signals": {
            "post": {
                "operationId": "signalExecution",
                "summary": "Send a signal to an open execution (as `saga signal`)",
                "parameters": [id()],
                "requestBody": body("SignalRequest"),
                "responses": responses(accepted("Recorded; a worker folds it.", schema("Signalled")), &[400, 404, 409]),
            }
        },
        "/executions/{id}/cancel": {
            "post": {
                "operationId": "cancelExecution",
                "summary": "Request cancellation: completed steps are compensated, last first (as `saga cancel`)",
                "parameters": [id()],
                "responses": responses(accepted("Recorded; a worker compensates.", schema("CancelRequested")), &[400, 404, 409]),
            }
        },
        "/workflows": {
            "get": {
                "operationId": "listWorkflows",
                "summary": "The registered workflow definitions (as `saga definitions`)",
                "responses": responses(ok("The definitions.", json!({"type": "array", "items": schema("WorkflowDefinition")})), &[]),
            }
        },
        "/workflows/{workflow_type}/diagram": {
            "get": {
                "operationId": "workflowDiagram",
                "summary": "A workflow type's Mermaid diagram (as `saga diagram TYPE`)",
                "parameters": [{
                    "name": "workflow_type", "in": "path", "required": true,
                    "description": "The workflow type.", "schema": {"type": "string"}
                }],
                "responses": responses(ok("The diagram.", schema("Diagram")), &[400, 404]),
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics: executions by type and status, the outbox backlog; with a task queue, its depth and dead letters",
                "responses": responses(json!({"200": {
                    "description": "Prometheus text format 0.0.4.",
                    "content": {"text/plain": {"schema": {"type": "string"}}}
                }}), &[]),
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": {
                    "description": "OpenAPI 3.0.",
                    "content": {"application/json": {"schema": {"type": "object"}}}
                }},
            }
        }
    });
    if dead_letters {
        let queue = query(
            "queue",
            "The task queue.",
            json!({"type": "string", "default": "default"}),
        );
        paths["/dead-letters"] = json!({
            "get": {
                "operationId": "listDeadLetters",
                "summary": "A queue's dead letters, oldest first (as `saga dlq list`)",
                "parameters": [queue],
                "responses": responses(ok("The dead letters.", json!({"type": "array", "items": schema("DeadLetter")})), &[400]),
            }
        });
        paths["/dead-letters/redrive"] = json!({
            "post": {
                "operationId": "redriveDeadLetters",
                "summary": "Publish dead letters to their queue again and remove them from the dead-letter stream (as `saga dlq redrive`)",
                "parameters": [queue, query("id", "Only the dead letter of the task with this dedup id.", json!({"type": "string"}))],
                "responses": responses(ok("The re-driven dead letters.", json!({"type": "array", "items": schema("DeadLetter")})), &[400, 404, 409]),
            }
        });
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Saga Engine",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Operate saga executions in a store: the `saga` CLI's operations over HTTP (`saga serve`). Failures are JSON bodies with a stable `code`."
        },
        "paths": paths,
        "components": {"schemas": schemas()}
    })
}

fn statuses() -> Vec<&'static str> {
    saga_runtime::domain::WorkflowStatus::ALL
        .iter()
        .map(|s| s.name())
        .collect()
}

/// The forms `since` and `until` take (a date must also exist: `2026-02-30` is refused).
fn time_filter() -> Value {
    json!({
        "type": "string",
        "pattern": r"^([0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2}))?|[0-9]{1,9}[smhd])$"
    })
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn id() -> Value {
    json!({"name": "id", "in": "path", "required": true, "description": "The execution id.", "schema": {"type": "string"}})
}

fn body(name: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema(name)}}})
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"200": {"description": description, "content": {"application/json": {"schema": schema}}}})
}

fn accepted(description: &str, schema: Value) -> Value {
    json!({"202": {"description": description, "content": {"application/json": {"schema": schema}}}})
}

/// `success` plus the error responses: those of `statuses` and, on every route, 500
/// (an unexpected failure) and 503 (the store or NATS is unreachable).
fn responses(success: Value, statuses: &[u16]) -> Value {
    let mut r = success;
    for status in statuses.iter().copied().chain([500, 503]) {
        let codes: Vec<&str> = Code::ALL
            .iter()
            .filter(|c| c.http_status() == status)
            .map(|c| c.name())
            .collect();
        r[status.to_string()] = json!({
            "description": format!("Failed: code {}.", codes.join(", ")),
            "content": {"application/json": {"schema": schema("Error")}}
        });
    }
    r
}

fn timestamp() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn nullable(mut schema: Value) -> Value {
    schema["nullable"] = json!(true);
    schema
}

fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

fn uint() -> Value {
    json!({"type": "integer", "minimum": 0})
}

fn schemas() -> Value {
    let codes: Vec<&str> = Code::ALL.iter().map(|c| c.name()).collect();
    json!({
        "Error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": codes, "description": "Stable: what kind of failure."},
                "message": {"type": "string", "description": "For people."}
            }
        },
        "ExecutionSummary": {
            "type": "object",
            "required": ["saga_id", "workflow_type", "status", "started_at", "closed_at", "version", "search_attributes"],
            "properties": {
                "saga_id": {"type": "string"},
                "workflow_type": {"type": "string"},
                "status": {"type": "string", "enum": statuses()},
                "started_at": timestamp(),
                "closed_at": nullable(timestamp()),
                "version": {"type": "integer", "minimum": 0, "description": "Events in its history."},
                "search_attributes": {"type": "object", "additionalProperties": {}}
            }
        },
        "ExecutionDescription": {
            "type": "object",
            "required": ["saga_id", "workflow_type", "fingerprint", "status", "checkpoint", "history_length",
                         "started_at", "closed_at", "pending_activities", "pending_timers", "waiting_for_signals",
                         "pending_children", "compensations_done", "compensations_pending", "failure", "output",
                         "workflow_task_failure", "trace_id"],
            "properties": {
                "saga_id": {"type": "string"},
                "workflow_type": {"type": "string"},
                "fingerprint": {"type": "string"},
                "status": {"type": "string", "enum": statuses()},
                "checkpoint": {"type": "string", "description": "The current checkpoint (state variant); `A | B` when several may be."},
                "history_length": uint(),
                "started_at": nullable(timestamp()),
                "closed_at": nullable(timestamp()),
                "pending_activities": {
                    "type": "array",
                    "description": "Activities in flight: [activity type, attempt].",
                    "items": {"type": "array", "minItems": 2, "maxItems": 2,
                              "items": {"oneOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]}}
                },
                "pending_timers": strings(),
                "waiting_for_signals": strings(),
                "pending_children": strings(),
                "compensations_done": strings(),
                "compensations_pending": strings(),
                "failure": nullable(json!({"type": "string"})),
                "output": {"nullable": true, "description": "The output (any JSON), once completed."},
                "workflow_task_failure": nullable(json!({"type": "string"})),
                "trace_id": {"type": "string"}
            }
        },
        "HistoryEvent": {
            "type": "object",
            "required": ["event_id", "saga_id", "event_type", "category", "timestamp", "attributes",
                         "event_version", "is_reset_point", "is_retry", "trace_id"],
            "properties": {
                "event_id": uint(),
                "saga_id": {"type": "string"},
                "event_type": {"type": "string", "description": "`WorkflowExecutionStarted`, `ActivityTaskCompleted`, ..."},
                "category": {"type": "string"},
                "timestamp": timestamp(),
                "attributes": {"nullable": true, "description": "The event's payload (JSON)."},
                "event_version": uint(),
                "is_reset_point": {"type": "boolean"},
                "is_retry": {"type": "boolean"},
                "trace_id": {"type": "string"}
            }
        },
        "WorkflowDefinition": {
            "type": "object",
            "required": ["workflow_type", "fingerprint", "checkpoints", "diagram", "timeout_ms", "registered_at"],
            "properties": {
                "workflow_type": {"type": "string"},
                "fingerprint": {"type": "string"},
                "checkpoints": {"type": "array", "items": {
                    "type": "object",
                    "required": ["id", "variant", "line", "kind", "awaits"],
                    "properties": {
                        "id": uint(),
                        "variant": {"type": "string"},
                        "line": uint(),
                        "kind": {"type": "string", "enum": ["Activity", "LocalActivity", "Child", "Sleep", "Signal", "Join", "JoinAll"]},
                        "awaits": {"type": "string"}
                    }
                }},
                "diagram": {"type": "string", "description": "Mermaid `stateDiagram-v2`; empty for a hand-written workflow."},
                "timeout_ms": nullable(uint()),
                "registered_at": timestamp()
            }
        },
        "Diagram": {
            "type": "object",
            "required": ["diagram"],
            "properties": {
                "saga_id": {"type": "string", "description": "The execution drawn."},
                "workflow_type": {"type": "string", "description": "The workflow type drawn."},
                "diagram": {"type": "string", "description": "Mermaid `stateDiagram-v2`."}
            }
        },
        "StartRequest": {
            "type": "object",
            "required": ["workflow_type", "input"],
            "additionalProperties": false,
            "properties": {
                "workflow_type": {"type": "string", "minLength": 1, "description": "A registered workflow type (see /workflows)."},
                "input": {"nullable": true, "description": "The workflow's input (any JSON)."},
                "id": {"type": "string", "minLength": 1, "pattern": "\\S", "description": "The execution id, not blank (default: `<type>-<time>`)."},
                "timeout_secs": {"type": "integer", "minimum": 1, "maximum": crate::ops::executions::MAX_TIMEOUT_SECS,
                                 "description": "Fail and compensate after this long (default: the workflow's own timeout)."},
                "task_queue": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$",
                               "description": "The task queue its workflow and activity tasks go to: only workers serving it run the execution (default: the workflow type's, as registered, else `default`)."}
            }
        },
        "Started": {
            "type": "object",
            "required": ["saga_id", "workflow_type", "fingerprint", "trace_id", "task_queue", "started_at"],
            "properties": {
                "saga_id": {"type": "string"},
                "workflow_type": {"type": "string"},
                "fingerprint": {"type": "string"},
                "trace_id": {"type": "string"},
                "task_queue": {"type": "string", "description": "The queue its tasks go to."},
                "started_at": timestamp()
            }
        },
        "SignalRequest": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": false,
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "payload": {"nullable": true, "description": "The payload (any JSON; default null)."}
            }
        },
        "Signalled": {
            "type": "object",
            "required": ["saga_id", "signal"],
            "properties": {"saga_id": {"type": "string"}, "signal": {"type": "string"}}
        },
        "CancelRequested": {
            "type": "object",
            "required": ["saga_id", "cancel_requested"],
            "properties": {"saga_id": {"type": "string"}, "cancel_requested": {"type": "boolean"}}
        },
        "DeadLetter": {
            "type": "object",
            "required": ["queue", "kind", "saga_id", "dedup_id", "reason", "delivery_count", "saga_status", "task", "payload", "payload_bytes"],
            "properties": {
                "queue": {"type": "string"},
                "kind": {"type": "string", "enum": ["workflow", "activity"]},
                "saga_id": {"type": "string"},
                "dedup_id": {"type": "string", "description": "What `redrive?id=` takes."},
                "reason": {"type": "string"},
                "delivery_count": uint(),
                "saga_status": nullable(json!({"type": "string", "enum": statuses(), "description": "The execution's status in the store; null when the store has no such execution (or, after a re-drive, was not read)."})),
                "task": nullable(json!({"type": "string", "enum": ["open", "settled", "unknown-saga"], "description": "`open`: the task's outbox row is still there, the saga has not recorded its result. `settled`: the saga recorded its result since (the reconciler published the task again and a worker ran it); re-driving it only clears the letter. `unknown-saga`: the store has no such execution. Null after a re-drive (the store is not read)."})),
                "payload": nullable(json!({"type": "string", "description": "The payload when it is UTF-8 text."})),
                "payload_bytes": uint()
            }
        }
    })
}
