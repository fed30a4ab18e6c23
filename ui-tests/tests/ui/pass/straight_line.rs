//! The manual's order saga: straight-line checkpoints, a signal with a timeout, an
//! early rejection, and compensations declared on the activities.
use saga_runtime::conformance::fixtures::{Approval, Order, Payment, PaymentRequest, Receipt, Reservation, Shipment};
use saga_runtime::prelude::*;

#[activity(compensate = release_inventory)]
async fn reserve_inventory(order: Order) -> Result<Reservation, ActivityError> {
    Ok(Reservation { reservation_id: format!("res-{}", order.id), order_id: order.id })
}

#[activity]
async fn release_inventory(_r: Reservation) -> Result<(), ActivityError> {
    Ok(())
}

#[activity(compensate = refund_payment, retry = RetryPolicy::exponential(5), timeout = "30s")]
async fn charge_payment(p: PaymentRequest) -> Result<Payment, ActivityError> {
    Ok(Payment { payment_id: format!("pay-{}", p.order_id), order_id: p.order_id, amount_cents: p.amount_cents, refund_fails: false })
}

#[activity]
async fn refund_payment(_p: Payment) -> Result<(), ActivityError> {
    Ok(())
}

#[activity(name = "ship")]
async fn ship_order(order: Order) -> Result<Shipment, ActivityError> {
    Ok(Shipment { tracking: format!("trk-{}", order.id), order_id: order.id, accepted: true })
}

#[workflow]
async fn order_saga(ctx: &mut WorkflowContext, order: Order) -> Result<Receipt, SagaError> {
    let reservation = ctx.activity(reserve_inventory, order.clone()).await?;
    let request = PaymentRequest { order_id: order.id.clone(), amount_cents: order.amount_cents, refund_fails: false };
    let payment = ctx.activity(charge_payment, request).await?;
    let approval: Approval = ctx.signal("approval").timeout(Duration::from_secs(3600)).await?;
    if !approval.granted {
        return Err(SagaError::rejected("not approved"));
    }
    let shipment = ctx.activity(ship_order, order).await?;
    Ok(Receipt { reservation, payment, shipment })
}

fn main() {
    let script = ui_tests::Script::new()
        .activities([
            activity::<reserve_inventory>,
            activity::<release_inventory>,
            activity::<charge_payment>,
            activity::<refund_payment>,
            activity::<ship_order>,
        ]);
    let run = ui_tests::check::<order_saga>(Order::new("o-1"), script.clone().signal("approval", Approval { granted: true }));
    assert_eq!(run.trace.len(), 4);
    assert_eq!(run.result.unwrap()["shipment"]["tracking"], "trk-o-1");
    let run = ui_tests::check::<order_saga>(Order::new("o-2"), script.signal("approval", Approval { granted: false }));
    assert_eq!(run.result, Err("rejected: not approved".to_owned()));
    assert_eq!(order_saga::checkpoints().len(), 4);
    assert_eq!(order_saga::checkpoints()[3].variant, "ShipOrder");
    assert_eq!(<charge_payment as Activity>::compensation(), Some("refund-payment"));
    assert_eq!(<ship_order as Activity>::TYPE_ID, "ship");
}
