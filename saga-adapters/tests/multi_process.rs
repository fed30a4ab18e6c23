//! Engines in separate OS processes over one PostgreSQL schema (issue 4's checks):
//! two processes run 500 order sagas to the end; a process killed with SIGKILL in the
//! middle of its run is restarted and, with the survivor, finishes every saga.
//!
//! The child processes are this test binary run again with `--exact worker_process`
//! and the `SAGA_MP_*` variables set; without them `worker_process` does nothing.
#![cfg(feature = "postgres")]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pg::{config, with_schema};
use saga_adapters::{PostgresConfig, PostgresStore};
use saga_runtime::conformance::engine::{self as scenario, assert_history_sound};
use saga_runtime::conformance::fixtures::{order_saga, Approval, Order};
use saga_runtime::domain::{EventType, SagaId, WorkflowStatus};
use saga_runtime::port::{EventStore, ExecutionFilter};

const ROLE: &str = "SAGA_MP_ROLE";
const SCHEMA: &str = "SAGA_MP_SCHEMA";
const COUNT: &str = "SAGA_MP_COUNT";
/// Sagas wait for an approval, which the worker sends one by one with this pause (ms).
const APPROVE_EVERY_MS: &str = "SAGA_MP_APPROVE_EVERY_MS";

/// The sagas told to fail: the carrier rejects their shipment after acting, so all
/// three steps are compensated.
fn told_to_fail(i: usize) -> bool {
    i % 10 == 3
}

fn saga_id(role: &str, i: usize) -> String {
    format!("{role}-{i}")
}

/// A child: starts its sagas (those that do not exist yet), approves them if asked,
/// and waits until each is closed. An engine that recovers on start also re-drives the
/// open sagas it finds, its own and the other process's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let schema = var(SCHEMA);
    let count: usize = var(COUNT).parse().unwrap();
    let approve_every = std::env::var(APPROVE_EVERY_MS)
        .ok()
        .map(|ms| Duration::from_millis(ms.parse().unwrap()));
    let store = PostgresStore::connect_with(PostgresConfig {
        max_connections: 12,
        ..config(&schema)
    })
    .await
    .expect("connect");
    let signals = store.signal_dispatcher().await.expect("dispatcher");
    let engine = scenario::builder(store)
        .signals(signals)
        .concurrency(16)
        .build()
        .await
        .expect("engine");
    for i in 0..count {
        let mut order = Order::new(&saga_id(&role, i));
        order.carrier_rejects = told_to_fail(i);
        order.needs_approval = approve_every.is_some();
        match engine.start::<order_saga>(saga_id(&role, i), order).await {
            Ok(_) => {}
            Err(e) if e.is_already_started() => {}
            Err(e) => panic!("start {}: {e}", saga_id(&role, i)),
        }
    }
    if let Some(every) = approve_every {
        for i in 0..count {
            let approval = Approval { granted: true };
            match engine.signal(saga_id(&role, i), "approval", approval).await {
                Ok(()) => {}
                Err(e) if e.context("code") == Some("closed") => {}
                Err(e) => panic!("approve {}: {e}", saga_id(&role, i)),
            }
            tokio::time::sleep(every).await;
        }
    }
    for i in 0..count {
        // Ok for a completed saga, the failure for a compensated one: either way closed.
        let _ = engine.result::<order_saga>(saga_id(&role, i)).await;
    }
    eprintln!("worker {role}: all {count} sagas closed");
}

fn spawn(role: &str, schema: &str, count: usize, approve_every_ms: Option<u64>) -> Child {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "worker_process",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(ROLE, role)
    .env(SCHEMA, schema)
    .env(COUNT, count.to_string())
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    if let Some(ms) = approve_every_ms {
        cmd.env(APPROVE_EVERY_MS, ms.to_string());
    }
    cmd.spawn().expect("spawn a worker process")
}

/// Waits for every child to exit successfully (killing them all on a failure or
/// after `limit`).
async fn wait_all(children: &mut [Child], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let mut running = 0;
        for c in children.iter_mut() {
            match c.try_wait().expect("try_wait") {
                Some(status) if !status.success() => {
                    children.iter_mut().for_each(|c| {
                        let _ = c.kill();
                    });
                    panic!("a worker process failed: {status}");
                }
                Some(_) => {}
                None => running += 1,
            }
        }
        if running == 0 {
            return;
        }
        if Instant::now() > deadline {
            children.iter_mut().for_each(|c| {
                let _ = c.kill();
            });
            panic!("worker processes still running after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every saga closed as told: a dense history with each activity attempt finished at
/// most once, a full replay, compensations exactly for the sagas told to fail.
async fn verify(config: PostgresConfig, roles: &[(&str, usize)]) {
    let store = PostgresStore::connect_with(config).await.unwrap();
    let client = scenario::builder(store.clone())
        .client_only()
        .build()
        .await
        .unwrap();
    let mut total = 0;
    for &(role, count) in roles {
        for i in 0..count {
            let id = saga_id(role, i);
            let h = store.history(&SagaId::new(&id)).await.unwrap();
            assert!(!h.is_empty(), "{id} has a history");
            assert_history_sound(&h);
            client
                .verify_replay(id.as_str())
                .await
                .unwrap_or_else(|e| panic!("{id} replays: {e}"));
            let compensations = scenario::compensations_in_history(&h);
            let last = h.last().unwrap().event_type;
            if told_to_fail(i) {
                assert_eq!(
                    compensations,
                    ["cancel-shipment", "refund-payment", "release-inventory"],
                    "{id}"
                );
                assert_eq!(last, EventType::WorkflowExecutionCanceled, "{id}");
            } else {
                assert!(compensations.is_empty(), "{id}: {compensations:?}");
                assert_eq!(last, EventType::WorkflowExecutionCompleted, "{id}");
            }
            total += 1;
        }
    }
    let listed = store
        .list_executions(&ExecutionFilter {
            workflow_type: Some("order-saga".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), total, "exactly the sagas started, once each");
    assert!(listed.iter().all(|s| matches!(
        s.status,
        WorkflowStatus::Completed | WorkflowStatus::Cancelled
    )));
}

/// Two engines in two OS processes over one database run 500 sagas to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_run_500_sagas() {
    with_schema(|config| async move {
        let schema = config.schema.clone().unwrap();
        let started = Instant::now();
        // Both processes migrate the fresh schema at once.
        let mut children = [
            spawn("a", &schema, 250, None),
            spawn("b", &schema, 250, None),
        ];
        wait_all(&mut children, Duration::from_secs(180)).await;
        eprintln!("500 sagas in two processes: {:?}", started.elapsed());
        verify(config, &[("a", 250), ("b", 250)]).await;
    })
    .await;
}

/// A process is killed with SIGKILL in the middle of its run; a restarted process and
/// the survivor finish every saga.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_restart_finishes_every_saga() {
    with_schema(|config| async move {
        let schema = config.schema.clone().unwrap();
        let store = PostgresStore::connect_with(config.clone()).await.unwrap();
        let mut a = spawn("a", &schema, 100, Some(20));
        let b = spawn("b", &schema, 100, Some(20));
        // Kill `a` once some of its sagas have finished, many others not.
        let closed_of_a = || async {
            let mut n = 0;
            for status in [WorkflowStatus::Completed, WorkflowStatus::Cancelled] {
                let filter = ExecutionFilter {
                    status: Some(status),
                    ..Default::default()
                };
                n += store
                    .list_executions(&filter)
                    .await
                    .unwrap()
                    .iter()
                    .filter(|s| s.saga_id.as_str().starts_with("a-"))
                    .count();
            }
            n
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while closed_of_a().await < 10 {
            assert!(Instant::now() < deadline, "worker a made no progress");
            assert!(a.try_wait().unwrap().is_none(), "worker a exited early");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        a.kill().expect("SIGKILL");
        let status = a.wait().unwrap();
        assert!(!status.success(), "killed: {status}");
        let closed = closed_of_a().await;
        eprintln!("killed worker a with {closed} of its 100 sagas closed");
        assert!(closed < 100, "worker a was killed mid-run");
        let mut rest = [b, spawn("a", &schema, 100, Some(20))];
        wait_all(&mut rest, Duration::from_secs(180)).await;
        verify(config, &[("a", 100), ("b", 100)]).await;
    })
    .await;
}
