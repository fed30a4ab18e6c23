//! The manual's order saga: reserve inventory → charge payment → approval signal →
//! ship order, each step with its compensation, written with `#[activity]` and
//! `#[workflow]`. Runs two executions on the engine — one that completes and one whose
//! carrier rejects the shipment, so its three compensations run last-in first-out —
//! printing every event as it is recorded, then the final status.
//!
//! Run: `cargo run -p examples --bin order_saga`
//!
//! Executions are stored in `saga.db` (SQLite, the embedded default), created on the
//! first run; every run lists the executions earlier runs left there. Set `SAGA_DB` to
//! use another file.

use std::time::Duration;

use saga_adapters::SqliteStore;
use saga_runtime::port::{EventStore, ExecutionFilter};
use saga_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub amount_cents: u64,
    /// Wait for an `approval` signal after charging.
    pub needs_approval: bool,
    /// The carrier rejects the shipment after the label was created.
    pub carrier_rejects: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub order_id: String,
    pub reservation_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRequest {
    pub order_id: String,
    pub amount_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub order_id: String,
    pub payment_id: String,
    pub amount_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipment {
    pub order_id: String,
    pub tracking: String,
    pub accepted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub granted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub reservation: Reservation,
    pub payment: Payment,
    pub shipment: Shipment,
}

#[activity(compensate = release_inventory)]
async fn reserve_inventory(
    ctx: ActivityContext,
    order: Order,
) -> Result<Reservation, ActivityError> {
    Ok(Reservation {
        reservation_id: format!("res-{}", ctx.idempotency_key()),
        order_id: order.id,
    })
}

#[activity]
async fn release_inventory(_reservation: Reservation) -> Result<(), ActivityError> {
    Ok(())
}

#[activity(compensate = refund_payment, retry = RetryPolicy::exponential(5), timeout = "30s")]
async fn charge_payment(ctx: ActivityContext, p: PaymentRequest) -> Result<Payment, ActivityError> {
    Ok(Payment {
        payment_id: format!("pay-{}", ctx.idempotency_key()),
        order_id: p.order_id,
        amount_cents: p.amount_cents,
    })
}

#[activity]
async fn refund_payment(_payment: Payment) -> Result<(), ActivityError> {
    Ok(())
}

#[activity(compensate = cancel_shipment)]
async fn ship_order(order: Order) -> Result<Shipment, ActivityError> {
    Ok(Shipment {
        tracking: format!("trk-{}", order.id),
        order_id: order.id,
        accepted: !order.carrier_rejects,
    })
}

#[activity]
async fn cancel_shipment(_shipment: Shipment) -> Result<(), ActivityError> {
    Ok(())
}

#[workflow]
async fn order_saga(ctx: &mut WorkflowContext, order: Order) -> Result<Receipt, SagaError> {
    let reservation = ctx.activity(reserve_inventory, order.clone()).await?;
    let request = PaymentRequest {
        order_id: order.id.clone(),
        amount_cents: order.amount_cents,
    };
    let payment = ctx.activity(charge_payment, request).await?;
    if order.needs_approval {
        let approval: Approval = ctx
            .signal("approval")
            .timeout(Duration::from_secs(3600))
            .await?;
        if !approval.granted {
            return Err(SagaError::rejected("not approved")); // compensations run, LIFO
        }
    }
    let shipment = ctx.activity(ship_order, order).await?;
    if !shipment.accepted {
        return Err(SagaError::rejected("carrier rejected the shipment"));
    }
    Ok(Receipt {
        reservation,
        payment,
        shipment,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let path = std::env::var("SAGA_DB").unwrap_or_else(|_| "saga.db".to_owned());
    let store = SqliteStore::open(&path).await?;
    let earlier = store.list_executions(&ExecutionFilter::default()).await?;
    println!("{path}: {} execution(s) from earlier runs", earlier.len());
    for e in &earlier {
        println!(
            "  {:<14} {:<11} {} events, started {}",
            e.saga_id,
            e.status.name(),
            e.version,
            e.started_at
        );
    }
    // Execution ids end in the run's number: one past the highest so far keeps them
    // unique in the file.
    let run_no = earlier
        .iter()
        .filter_map(|e| e.saga_id.as_str().rsplit('-').next()?.parse::<usize>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let (ok_id, rejected_id) = (format!("order-42-{run_no}"), format!("order-43-{run_no}"));
    println!();

    let engine = SagaEngine::builder()
        .store(store)
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

    let happy = Order {
        id: ok_id.clone(),
        amount_cents: 4_200,
        needs_approval: true,
        carrier_rejects: false,
    };
    let run = engine.start::<order_saga>(ok_id.as_str(), happy).await?;
    // The approval may come before or after the saga waits for it.
    engine
        .signal(ok_id.as_str(), "approval", Approval { granted: true })
        .await?;
    follow(&engine, &ok_id).await?;
    let receipt = run.result().await?;
    println!(
        "receipt: shipment {} for payment {}\n",
        receipt.shipment.tracking, receipt.payment.payment_id
    );

    let rejected = Order {
        id: rejected_id.clone(),
        amount_cents: 1_000,
        needs_approval: false,
        carrier_rejects: true,
    };
    let run = engine
        .start::<order_saga>(rejected_id.as_str(), rejected)
        .await?;
    follow(&engine, &rejected_id).await?;
    match run.result().await {
        Ok(_) => println!("unexpected: {rejected_id} completed"),
        Err(e) => println!("{rejected_id} did not complete: {e}"),
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
                "{saga_id:>11} #{:<3} {:<34} {what}",
                e.event_id,
                e.event_type.name()
            );
        }
        printed = history.len();
        let d = engine.describe(saga_id).await?;
        if d.closed_at.is_some() {
            println!("{saga_id:>11} final status: {}", d.status);
            if !d.compensations_done.is_empty() {
                println!(
                    "{saga_id:>11} compensations (in order): {}",
                    d.compensations_done.join(", ")
                );
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
