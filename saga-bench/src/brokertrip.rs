//! The floor one trip through NATS JetStream sets on `postgres+nats` latency: the time
//! from a task's publish to its delivery to a pull already waiting, at one in flight.
//!
//! Why: on the default path a saga crosses the broker once. The start's commit
//! schedules the first step and publishes its task; a worker's waiting pull receives
//! it; every later step runs where the previous result was recorded. So the least a
//! saga can take there is the six commits of `commit_floor_ms` plus one such trip.
//! Measured in the same minutes as the saga, the two together say how much of the
//! latency is the engine's own, on a machine whose disk and CPU vary from hour to hour.

use std::sync::Arc;
use std::time::{Duration, Instant};

use saga_adapters::{NatsConfig, NatsTaskQueue};
use saga_runtime::domain::SagaId;
use saga_runtime::port::{Task, TaskKind, TaskQueue};

use crate::backend::fresh_schema;
use crate::report::median;
use crate::BenchResult;

/// Trips timed, one at a time, after a tenth as many untimed.
const TRIPS: usize = 200;

/// The queue the trips go through (a namespace of their own).
const QUEUE: &str = "trip";

/// The median publish-to-delivery time of a small task through JetStream on
/// `nats_url`, in a namespace of its own that is deleted afterwards.
pub(crate) async fn nats_trip_latency(nats_url: &str) -> BenchResult<Duration> {
    let namespace = fresh_schema().replace('_', "");
    let queue =
        Arc::new(NatsTaskQueue::connect(nats_url, NatsConfig::namespaced(&namespace)).await?);
    let result = trips(&queue).await;
    queue.delete_streams().await?;
    result
}

async fn trips(queue: &Arc<NatsTaskQueue>) -> BenchResult<Duration> {
    let mut times = Vec::with_capacity(TRIPS);
    for i in 0..TRIPS + TRIPS / 10 {
        let pull = {
            let queue = queue.clone();
            tokio::spawn(async move {
                let got = queue.fetch(QUEUE, 1, Duration::from_secs(5)).await;
                (got, Instant::now())
            })
        };
        // As a worker's pull is, this one is waiting at the server before the publish.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let sent = Instant::now();
        queue.publish(task(i)).await?;
        let (got, at) = pull.await?;
        let delivery = got?
            .into_iter()
            .next()
            .ok_or("a pull waiting for the task came back without it")?;
        queue.ack(&delivery.tag).await?;
        if i >= TRIPS / 10 {
            times.push(at.duration_since(sent).as_secs_f64());
        }
    }
    Ok(Duration::from_secs_f64(median(&mut times)))
}

/// A task the size of saga-5's first activity task, give or take.
fn task(i: usize) -> Task {
    let saga_id = SagaId::new(format!("trip-{i}"));
    Task {
        kind: TaskKind::Activity,
        dedup_id: format!("{saga_id}:1"),
        saga_id,
        queue: QUEUE.to_owned(),
        payload: vec![b'x'; 1024],
    }
}
