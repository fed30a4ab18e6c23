//! The order saga of the distributed `worker` example: reserve → charge → ship, each
//! step compensated, with every effect written to a ledger in PostgreSQL under the
//! activity's idempotency key.
//!
//! The ledger shows what exactly-once effects over at-least-once delivery look like: a
//! redelivered attempt (a worker killed mid-step, a task re-published by the outbox)
//! runs the activity again, but `shop_effects` is keyed by
//! [`ActivityContext::idempotency_key`], so the effect lands once. `shop_attempts`
//! counts every run, to show the duplicates the key absorbed.

use std::sync::OnceLock;

use saga_runtime::prelude::*;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// An order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShopOrder {
    pub id: String,
    pub amount_cents: u64,
    /// The carrier rejects the shipment after the label exists: the saga compensates.
    pub carrier_rejects: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub order_id: String,
    pub reservation_id: String,
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
pub struct ShopReceipt {
    pub reservation: Reservation,
    pub payment: Payment,
    pub shipment: Shipment,
}

static LEDGER: OnceLock<PgPool> = OnceLock::new();

/// Creates the ledger tables (in the pool's `search_path`) and makes the activities of
/// this process write to them. Call once, before the engine starts.
pub async fn use_ledger(pool: PgPool) -> Result<(), Error> {
    for ddl in [
        "CREATE TABLE IF NOT EXISTS shop_effects (idempotency_key text PRIMARY KEY, \
         saga_id text NOT NULL, action text NOT NULL)",
        "CREATE TABLE IF NOT EXISTS shop_attempts (saga_id text NOT NULL, \
         action text NOT NULL, idempotency_key text NOT NULL, pid integer NOT NULL)",
    ] {
        if let Err(e) = sqlx::query(ddl).execute(&pool).await {
            // Two workers creating the table at once: the loser sees a duplicate type.
            let dup =
                matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"));
            if !dup {
                return Err(Error::new(ErrorKind::Configuration, format!("ledger: {e}")));
            }
        }
    }
    LEDGER
        .set(pool)
        .map_err(|_| Error::new(ErrorKind::Configuration, "the ledger is set already"))
}

/// Records `action` for this step: an attempt always, the effect once per key.
async fn effect(ctx: &ActivityContext, action: &str) -> Result<(), ActivityError> {
    let pool = LEDGER
        .get()
        .ok_or_else(|| ActivityError::non_retryable("no ledger: call shop::use_ledger first"))?;
    let key = ctx.idempotency_key();
    let retry = |e: sqlx::Error| ActivityError::retryable(format!("ledger: {e}"));
    sqlx::query(
        "INSERT INTO shop_attempts (saga_id, action, idempotency_key, pid) VALUES ($1, $2, $3, $4)",
    )
    .bind(ctx.saga_id.as_str())
    .bind(action)
    .bind(&key)
    .bind(std::process::id() as i32)
    .execute(pool)
    .await
    .map_err(retry)?;
    sqlx::query(
        "INSERT INTO shop_effects (idempotency_key, saga_id, action) VALUES ($1, $2, $3) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(&key)
    .bind(ctx.saga_id.as_str())
    .bind(action)
    .execute(pool)
    .await
    .map_err(retry)?;
    Ok(())
}

#[activity(compensate = release_inventory, retry = RetryPolicy::exponential(5))]
pub async fn reserve_inventory(
    ctx: ActivityContext,
    order: ShopOrder,
) -> Result<Reservation, ActivityError> {
    effect(&ctx, "reserve").await?;
    Ok(Reservation {
        reservation_id: format!("res-{}", ctx.idempotency_key()),
        order_id: order.id,
    })
}

#[activity(retry = RetryPolicy::exponential(5))]
pub async fn release_inventory(
    ctx: ActivityContext,
    _reservation: Reservation,
) -> Result<(), ActivityError> {
    effect(&ctx, "release").await
}

#[activity(compensate = refund_payment, retry = RetryPolicy::exponential(5), timeout = "30s")]
pub async fn charge_payment(
    ctx: ActivityContext,
    order: ShopOrder,
) -> Result<Payment, ActivityError> {
    effect(&ctx, "charge").await?;
    Ok(Payment {
        payment_id: format!("pay-{}", ctx.idempotency_key()),
        order_id: order.id,
        amount_cents: order.amount_cents,
    })
}

#[activity(retry = RetryPolicy::exponential(5))]
pub async fn refund_payment(ctx: ActivityContext, _payment: Payment) -> Result<(), ActivityError> {
    effect(&ctx, "refund").await
}

#[activity(compensate = cancel_shipment, retry = RetryPolicy::exponential(5))]
pub async fn ship_order(ctx: ActivityContext, order: ShopOrder) -> Result<Shipment, ActivityError> {
    effect(&ctx, "ship").await?;
    Ok(Shipment {
        tracking: format!("trk-{}", order.id),
        order_id: order.id,
        accepted: !order.carrier_rejects,
    })
}

#[activity(retry = RetryPolicy::exponential(5))]
pub async fn cancel_shipment(
    ctx: ActivityContext,
    _shipment: Shipment,
) -> Result<(), ActivityError> {
    effect(&ctx, "cancel-shipment").await
}

#[workflow]
pub async fn shop_order(
    ctx: &mut WorkflowContext,
    order: ShopOrder,
) -> Result<ShopReceipt, SagaError> {
    let reservation = ctx.activity(reserve_inventory, order.clone()).await?;
    let payment = ctx.activity(charge_payment, order.clone()).await?;
    let shipment = ctx.activity(ship_order, order).await?;
    if !shipment.accepted {
        return Err(SagaError::rejected("carrier rejected the shipment"));
    }
    Ok(ShopReceipt {
        reservation,
        payment,
        shipment,
    })
}

/// The engine builder with the shop workflow and its activities registered.
pub fn builder() -> saga_runtime::engine::SagaEngineBuilder {
    SagaEngine::builder().workflow::<shop_order>().activities([
        activity::<reserve_inventory>(),
        activity::<release_inventory>(),
        activity::<charge_payment>(),
        activity::<refund_payment>(),
        activity::<ship_order>(),
        activity::<cancel_shipment>(),
    ])
}
