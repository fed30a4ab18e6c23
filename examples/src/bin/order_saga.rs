//! The manual's order saga: reserve inventory → charge payment → approval signal →
//! ship order, each step with its compensation. Runs two executions on the engine —
//! one that completes and one whose carrier rejects the shipment, so its three
//! compensations run last-in first-out — printing every event as it is recorded.
//!
//! Run: `cargo run -p examples --bin order_saga`
//!
//! The workflow is the hand-written state machine from
//! `saga_runtime::conformance::fixtures` (the shape `#[workflow]` will generate).

use std::time::Duration;

use saga_runtime::activity::activity;
use saga_runtime::adapter::memory::InMemoryStore;
use saga_runtime::conformance::fixtures::*;
use saga_runtime::prelude::*;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let engine = SagaEngine::builder()
        .store(InMemoryStore::new())
        .workflow::<order_saga>()
        .activities([
            activity::<reserve_inventory>(),
            activity::<release_inventory>(),
            activity::<charge_payment>(),
            activity::<refund_payment>(),
            activity::<ship_order>(),
            activity::<cancel_shipment>(),
        ])
        .build()
        .await?;

    let mut happy = Order::new("order-42");
    happy.needs_approval = true;
    let run = engine.start::<order_saga>("order-42", happy).await?;
    // The approval may come before or after the saga waits for it.
    engine
        .signal("order-42", "approval", Approval { granted: true })
        .await?;
    follow(&engine, "order-42").await?;
    let receipt = run.result().await?;
    println!(
        "receipt: shipment {} for payment {}\n",
        receipt.shipment.tracking, receipt.payment.payment_id
    );

    let mut rejected = Order::new("order-43");
    rejected.carrier_rejects = true;
    let run = engine.start::<order_saga>("order-43", rejected).await?;
    follow(&engine, "order-43").await?;
    match run.result().await {
        Ok(_) => println!("unexpected: order-43 completed"),
        Err(e) => println!("order-43 did not complete: {e}"),
    }
    Ok(())
}

/// Prints each event of `saga_id` as it is recorded, then the final status.
async fn follow(engine: &SagaEngine, saga_id: &str) -> Result<(), Error> {
    let mut printed = 0;
    loop {
        let history = engine.history(saga_id).await?;
        for e in &history[printed..] {
            let what = e
                .attr_str("activity_type")
                .or_else(|| e.attr_str("name"))
                .or_else(|| e.attr_str("reason"))
                .unwrap_or("");
            println!(
                "{saga_id:>9} #{:<3} {:<34} {what}",
                e.event_id,
                e.event_type.name()
            );
        }
        printed = history.len();
        let d = engine.describe(saga_id).await?;
        if d.closed_at.is_some() {
            println!("{saga_id:>9} final status: {}", d.status);
            if !d.compensations_done.is_empty() {
                println!(
                    "{saga_id:>9} compensations (in order): {}",
                    d.compensations_done.join(", ")
                );
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
