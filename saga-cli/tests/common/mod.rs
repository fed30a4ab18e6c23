//! Helpers of the CLI tests: stores filled by real engine runs of the conformance
//! fixtures, and the `saga` binary run as a user runs it.
#![allow(dead_code)]

pub mod http;

use std::process::{Command, Output};
use std::time::Duration;

use saga_runtime::conformance::engine::builder;
use saga_runtime::conformance::fixtures::{order_saga, Order};
use saga_runtime::domain::{EventType, HistoryEvent, SagaId};
use saga_runtime::engine::{ExecutionDescription, SagaEngine};
use saga_runtime::port::WorkflowStore;
use serde_json::json;

/// What one run of `saga` printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "saga failed: {self:#?}");
        assert!(self.stderr.is_empty(), "stderr on success: {self:#?}");
        &self.stdout
    }

    /// Asserts failure with `code` and one `error: ...` line containing `text`.
    #[track_caller]
    pub fn fails(&self, code: i32, text: &str) {
        assert_eq!(self.code, code, "exit code: {self:#?}");
        assert!(self.stdout.is_empty(), "stdout on failure: {self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one error line: {self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        assert!(lines[0].contains(text), "expected `{text}`: {self:#?}");
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// The binary under test, with no store from the environment.
pub fn saga_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_saga"));
    c.env_remove("SAGA_STORE").env_remove("SAGA_SCHEMA");
    c
}

/// Runs `saga` with `args` (off the async runtime: the engine keeps running).
pub async fn saga(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        saga_command()
            .args(&args)
            .output()
            .expect("run the saga binary")
            .into()
    })
    .await
    .expect("join")
}

pub fn approval_order(id: &str) -> Order {
    Order {
        needs_approval: true,
        ..Order::new(id)
    }
}

/// A fresh engine with the fixtures on `store`; it re-drives open executions at start.
pub async fn engine<S: WorkflowStore + Clone>(store: &S) -> SagaEngine {
    builder(store.clone()).build().await.expect("engine")
}

/// Polls `describe` until `done`.
pub async fn wait_until(
    engine: &SagaEngine,
    id: &str,
    done: impl Fn(&ExecutionDescription) -> bool,
) -> ExecutionDescription {
    for _ in 0..1000 {
        if let Ok(d) = engine.describe(id).await {
            if done(&d) {
                return d;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{id} never got there: {:?}", engine.describe(id).await);
}

/// Fills `store` by real runs: `done-1` completed, `parked-1` waiting for approval,
/// `comp-1` compensated after the carrier rejected it, and `tagged-1`, a history
/// carrying a search attribute (the engine sets none yet; written as one would).
pub async fn fill<S: WorkflowStore + Clone>(store: &S) {
    let engine = engine(store).await;
    engine
        .start::<order_saga>("done-1", Order::new("d"))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    let rejected = Order {
        carrier_rejects: true,
        ..Order::new("c")
    };
    let comp = engine
        .start::<order_saga>("comp-1", rejected)
        .await
        .unwrap();
    comp.result().await.unwrap_err();
    engine
        .start::<order_saga>("parked-1", approval_order("p"))
        .await
        .unwrap();
    wait_until(&engine, "parked-1", |d| {
        d.waiting_for_signals == ["approval"]
    })
    .await;
    engine.shutdown().await;

    let id = SagaId::new("tagged-1");
    let now = chrono::Utc::now();
    let events = vec![
        HistoryEvent::new(
            id.clone(),
            0,
            EventType::WorkflowExecutionStarted,
            now,
            json!({"workflow_type": "tagged", "fingerprint": "t1", "input": null, "timeout_ms": null}),
            "trace-tagged".into(),
        ),
        HistoryEvent::new(
            id.clone(),
            1,
            EventType::UpsertSearchAttributes,
            now,
            json!({"search_attributes": {"region": "eu", "priority": 3}}),
            "trace-tagged".into(),
        ),
    ];
    store.append(&id, 0, events).await.unwrap();
}

/// Writes two executions that wait on each other as child workflows, `loop-a` running
/// `loop-b` and `loop-b` running `loop-a`, as a store written by another writer could
/// hold them (the engine's own child starts cannot form a cycle): the watchdog's
/// deadlock detector finds them.
pub async fn write_deadlock<S: WorkflowStore>(store: &S) {
    let start = chrono::Utc::now() - chrono::TimeDelta::minutes(10);
    for (i, (me, partner)) in [("loop-a", "loop-b"), ("loop-b", "loop-a")]
        .into_iter()
        .enumerate()
    {
        let id = SagaId::new(me);
        let at = start + chrono::TimeDelta::seconds(i as i64);
        let trace = format!("trace-{me}");
        let event = |n: u64, t: EventType, attributes| {
            HistoryEvent::new(id.clone(), n, t, at, attributes, trace.clone())
        };
        let events = vec![
            event(
                0,
                EventType::WorkflowExecutionStarted,
                json!({"workflow_type": "mutual", "fingerprint": "m1", "input": null,
                       "timeout_ms": null, "parent": {"saga_id": partner, "seq": 0}}),
            ),
            event(
                1,
                EventType::StartChildWorkflowExecutionInitiated,
                json!({"seq": 0, "slot": 0, "child_id": partner, "workflow_type": "mutual",
                       "input": null}),
            ),
            event(
                2,
                EventType::ChildWorkflowExecutionStarted,
                json!({"seq": 0, "child_id": partner}),
            ),
        ];
        store.append(&id, 0, events).await.unwrap();
    }
}
