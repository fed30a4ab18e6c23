//! Activity task queues on PostgreSQL + NATS: a step whose activity names a queue
//! (`vault_charge` on `vault`) goes through that queue's subject and consumer to the
//! one worker serving it, and so does its compensation; the other steps stay on the
//! execution's queue, where another worker runs them. Every task passes through the
//! outbox, as in a deployment of many workers. The vault worker may hold only its
//! activities: it records their results and the workflow's workers decide what follows.
//!
//! Without PostgreSQL or NATS the test skips, unless `CI` is set, where it fails.
#![cfg(all(feature = "nats", feature = "postgres"))]

mod common;

use common::{nats, pg};
use saga_runtime::activity::activity;
use saga_runtime::conformance::engine as scenario;
use saga_runtime::conformance::fixtures::{vault_charge, vault_refund, VAULT_QUEUE};
use saga_runtime::engine::SagaEngine;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_runs_on_the_workers_of_its_activity_queue() {
    pg::with_schema(|config| async move {
        nats::with_namespace(
            |c| c,
            |nats_config| async move {
                let connect = || nats::pg_engine(&config, &nats_config);
                let front = connect().await.build().await.unwrap();
                let vault = connect()
                    .await
                    .task_queue_name(VAULT_QUEUE)
                    .build()
                    .await
                    .unwrap();
                scenario::steps_follow_their_activity_queues(&front, &vault, "nats-routed").await;
                every_task_acked(&nats::queue(&nats_config).await).await;
                front.shutdown().await;
                vault.shutdown().await;
            },
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_only_worker_hands_its_results_to_the_workflows_workers() {
    pg::with_schema(|config| async move {
        nats::with_namespace(
            |c| c,
            |nats_config| async move {
                let front = nats::pg_engine(&config, &nats_config)
                    .await
                    .build()
                    .await
                    .unwrap();
                let queue = nats::queue(&nats_config).await;
                let vault = SagaEngine::builder()
                    .store(
                        saga_adapters::PostgresStore::connect_with(config.clone())
                            .await
                            .unwrap(),
                    )
                    .signals(queue.signal_dispatcher())
                    .queue(queue.clone())
                    .activities([activity::<vault_charge>(), activity::<vault_refund>()])
                    .task_queue_name(VAULT_QUEUE)
                    .build()
                    .await
                    .unwrap();
                scenario::steps_follow_their_activity_queues(&front, &vault, "nats-split").await;
                let m = vault.metrics();
                assert_eq!((m.inputs_handed_over, m.workflow_tasks), (3, 0), "{m:?}");
                every_task_acked(&queue).await;
                front.shutdown().await;
                vault.shutdown().await;
            },
        )
        .await;
    })
    .await;
}

/// Every task of both queues was acknowledged: none waits for a redelivery. A worker
/// acks a workflow task after the commit that wakes the caller, so the last ack may
/// still be on its way: wait for it a little, far less than the ack wait (30 s) after
/// which a task never acked would come back.
async fn every_task_acked(queue: &saga_adapters::NatsTaskQueue) {
    for q in ["default", VAULT_QUEUE] {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
        let mut left = queue.unacked(q).await.unwrap();
        while left > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            left = queue.unacked(q).await.unwrap();
        }
        assert_eq!(left, 0, "every task of queue {q} was acknowledged");
    }
}
