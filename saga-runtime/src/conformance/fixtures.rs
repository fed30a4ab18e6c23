//! Workflows and activities the engine scenarios run. The workflows are written by
//! hand in exactly the shape `#[workflow]` generates: a state enum with one variant
//! per resume point holding the live locals, and a `resume` that runs one segment.

#![allow(missing_docs, non_camel_case_types)]

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::activity::{Activity, ActivityContext, ActivityError, ActivityOptions, RetryPolicy};
use crate::workflow::{
    Checkpoint, CheckpointKind, Command, SagaError, Transition, Wake, Workflow, WorkflowContext,
    WorkflowOptions,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub amount_cents: u64,
    /// Wait for an `approval` signal after charging.
    pub needs_approval: bool,
    /// The carrier rejects the shipment after the label was created (step 3 fails
    /// after acting, so its compensation runs too).
    pub carrier_rejects: bool,
    /// `ship_order` itself fails, non-retryably (step 3 never acted).
    pub ship_error: bool,
    /// `refund_payment` always fails.
    pub refund_fails: bool,
}

impl Order {
    pub fn new(id: &str) -> Self {
        Order {
            id: id.to_owned(),
            amount_cents: 4_200,
            needs_approval: false,
            carrier_rejects: false,
            ship_error: false,
            refund_fails: false,
        }
    }
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
    pub refund_fails: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub order_id: String,
    pub payment_id: String,
    pub amount_cents: u64,
    pub refund_fails: bool,
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

pub struct reserve_inventory {}
impl Activity for reserve_inventory {
    const TYPE_ID: &'static str = "reserve-inventory";
    type Input = Order;
    type Output = Reservation;
    async fn execute(ctx: ActivityContext, order: Order) -> Result<Reservation, ActivityError> {
        Ok(Reservation {
            reservation_id: format!("res-{}", ctx.idempotency_key()),
            order_id: order.id,
        })
    }
    fn compensation() -> Option<&'static str> {
        Some(release_inventory::TYPE_ID)
    }
}

pub struct release_inventory {}
impl Activity for release_inventory {
    const TYPE_ID: &'static str = "release-inventory";
    type Input = Reservation;
    type Output = ();
    async fn execute(_ctx: ActivityContext, _r: Reservation) -> Result<(), ActivityError> {
        Ok(())
    }
}

pub struct charge_payment {}
impl Activity for charge_payment {
    const TYPE_ID: &'static str = "charge-payment";
    type Input = PaymentRequest;
    type Output = Payment;
    async fn execute(ctx: ActivityContext, p: PaymentRequest) -> Result<Payment, ActivityError> {
        Ok(Payment {
            payment_id: format!("pay-{}", ctx.idempotency_key()),
            order_id: p.order_id,
            amount_cents: p.amount_cents,
            refund_fails: p.refund_fails,
        })
    }
    fn options() -> ActivityOptions {
        ActivityOptions {
            retry: RetryPolicy::exponential(5),
            start_to_close_timeout: Some(Duration::from_secs(30)),
            task_queue: None,
        }
    }
    fn compensation() -> Option<&'static str> {
        Some(refund_payment::TYPE_ID)
    }
}

pub struct refund_payment {}
impl Activity for refund_payment {
    const TYPE_ID: &'static str = "refund-payment";
    type Input = Payment;
    type Output = ();
    async fn execute(_ctx: ActivityContext, p: Payment) -> Result<(), ActivityError> {
        if p.refund_fails {
            Err(ActivityError::retryable(
                "payment provider refuses the refund",
            ))
        } else {
            Ok(())
        }
    }
    fn options() -> ActivityOptions {
        ActivityOptions {
            retry: RetryPolicy::exponential(3).with_initial_interval(Duration::from_millis(10)),
            start_to_close_timeout: None,
            task_queue: None,
        }
    }
}

pub struct ship_order {}
impl Activity for ship_order {
    const TYPE_ID: &'static str = "ship-order";
    type Input = Order;
    type Output = Shipment;
    async fn execute(_ctx: ActivityContext, order: Order) -> Result<Shipment, ActivityError> {
        if order.ship_error {
            return Err(ActivityError::non_retryable(
                "no carrier serves this address",
            ));
        }
        Ok(Shipment {
            tracking: format!("trk-{}", order.id),
            order_id: order.id,
            accepted: !order.carrier_rejects,
        })
    }
    fn compensation() -> Option<&'static str> {
        Some(cancel_shipment::TYPE_ID)
    }
}

pub struct cancel_shipment {}
impl Activity for cancel_shipment {
    const TYPE_ID: &'static str = "cancel-shipment";
    type Input = Shipment;
    type Output = ();
    async fn execute(_ctx: ActivityContext, _s: Shipment) -> Result<(), ActivityError> {
        Ok(())
    }
}

/// The manual's order saga: reserve inventory → charge payment → (approval) → ship.
pub struct order_saga {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum OrderSagaState {
    Start {
        order: Order,
    },
    ReserveInventory {
        order: Order,
    },
    ChargePayment {
        order: Order,
        reservation: Reservation,
    },
    Approval {
        order: Order,
        reservation: Reservation,
        payment: Payment,
    },
    ShipOrder {
        reservation: Reservation,
        payment: Payment,
    },
    Finished,
}

fn payment_request(order: &Order) -> PaymentRequest {
    PaymentRequest {
        order_id: order.id.clone(),
        amount_cents: order.amount_cents,
        refund_fails: order.refund_fails,
    }
}

macro_rules! take {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Transition::Fail(SagaError::from(e)),
        }
    };
}

impl Workflow for order_saga {
    const TYPE_ID: &'static str = "order-saga";
    const FINGERPRINT: &'static str = "order-saga:v1";
    type Input = Order;
    type Output = Receipt;
    type Error = SagaError;
    type State = OrderSagaState;

    fn start(order: Order) -> OrderSagaState {
        OrderSagaState::Start { order }
    }

    fn checkpoints() -> &'static [Checkpoint] {
        ORDER_SAGA_CHECKPOINTS
    }

    fn diagram() -> &'static str {
        ORDER_SAGA_DIAGRAM
    }

    fn resume(state: OrderSagaState, _ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        use OrderSagaState as S;
        match state {
            S::Start { order } => Transition::Suspend {
                commands: vec![Command::activity::<reserve_inventory>(&order)],
                state: S::ReserveInventory { order },
            },
            S::ReserveInventory { order } => {
                let reservation = take!(wake.activity::<reserve_inventory>());
                Transition::Suspend {
                    commands: vec![Command::activity::<charge_payment>(&payment_request(
                        &order,
                    ))],
                    state: S::ChargePayment { order, reservation },
                }
            }
            S::ChargePayment { order, reservation } => {
                let payment = take!(wake.activity::<charge_payment>());
                if order.needs_approval {
                    Transition::Suspend {
                        commands: vec![Command::signal(
                            "approval",
                            Some(Duration::from_secs(3600)),
                        )],
                        state: S::Approval {
                            order,
                            reservation,
                            payment,
                        },
                    }
                } else {
                    Transition::Suspend {
                        commands: vec![Command::activity::<ship_order>(&order)],
                        state: S::ShipOrder {
                            reservation,
                            payment,
                        },
                    }
                }
            }
            S::Approval {
                order,
                reservation,
                payment,
            } => {
                let approval: Approval = take!(wake.signal());
                if !approval.granted {
                    return Transition::Fail(SagaError::rejected("not approved"));
                }
                Transition::Suspend {
                    commands: vec![Command::activity::<ship_order>(&order)],
                    state: S::ShipOrder {
                        reservation,
                        payment,
                    },
                }
            }
            S::ShipOrder {
                reservation,
                payment,
            } => {
                let shipment = take!(wake.activity::<ship_order>());
                if !shipment.accepted {
                    return Transition::Fail(SagaError::rejected("carrier rejected the shipment"));
                }
                Transition::Complete(Receipt {
                    reservation,
                    payment,
                    shipment,
                })
            }
            S::Finished => Transition::Fail(SagaError::new("finished", "resumed after the end")),
        }
    }
}

/// [`order_saga`]'s checkpoint table, as `#[workflow]` would emit it (lines are those of
/// the manual's example).
const ORDER_SAGA_CHECKPOINTS: &[Checkpoint] = &[
    Checkpoint {
        id: 0,
        variant: "ReserveInventory",
        line: 3,
        kind: CheckpointKind::Activity,
        awaits: "reserve_inventory",
    },
    Checkpoint {
        id: 1,
        variant: "ChargePayment",
        line: 4,
        kind: CheckpointKind::Activity,
        awaits: "charge_payment",
    },
    Checkpoint {
        id: 2,
        variant: "Approval",
        line: 5,
        kind: CheckpointKind::Signal,
        awaits: "approval",
    },
    Checkpoint {
        id: 3,
        variant: "ShipOrder",
        line: 9,
        kind: CheckpointKind::Activity,
        awaits: "ship_order",
    },
];

/// [`order_saga`]'s diagram, in the shape `#[workflow]` emits.
const ORDER_SAGA_DIAGRAM: &str = "stateDiagram-v2
    [*] --> Start
    Start --> ReserveInventory
    ReserveInventory: activity reserve_inventory (line 3)
    ReserveInventory --> ChargePayment
    ReserveInventory --> Failed: error
    ChargePayment: activity charge_payment (line 4)
    ChargePayment --> Approval
    ChargePayment --> ShipOrder
    ChargePayment --> Failed: error
    Approval: signal approval (line 5)
    Approval --> ShipOrder
    Approval --> Failed: error
    ShipOrder: activity ship_order (line 9)
    ShipOrder --> [*]: return
    ShipOrder --> Failed: error
    Failed --> Compensating: undo completed steps, last first
    Compensating --> [*]
";

/// The same type id and fingerprint as [`order_saga`], but it ships before charging:
/// a code change that forgot to change the fingerprint. Replay must catch it.
pub struct order_saga_reordered {}

impl Workflow for order_saga_reordered {
    const TYPE_ID: &'static str = order_saga::TYPE_ID;
    const FINGERPRINT: &'static str = order_saga::FINGERPRINT;
    type Input = Order;
    type Output = Receipt;
    type Error = SagaError;
    type State = OrderSagaState;

    fn start(order: Order) -> OrderSagaState {
        OrderSagaState::Start { order }
    }

    fn resume(state: OrderSagaState, ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        use OrderSagaState as S;
        match state {
            S::ReserveInventory { order } => {
                let reservation = take!(wake.activity::<reserve_inventory>());
                let payment = Payment {
                    order_id: order.id.clone(),
                    payment_id: "later".into(),
                    amount_cents: order.amount_cents,
                    refund_fails: false,
                };
                Transition::Suspend {
                    commands: vec![Command::activity::<ship_order>(&order)],
                    state: S::ShipOrder {
                        reservation,
                        payment,
                    },
                }
            }
            other => match order_saga::resume(other, ctx, wake) {
                Transition::Suspend { state, commands } => Transition::Suspend { state, commands },
                Transition::Complete(r) => Transition::Complete(r),
                Transition::Fail(e) => Transition::Fail(e),
            },
        }
    }
}

/// [`order_saga`] with a new fingerprint (the code changed and says so).
pub struct order_saga_v2 {}

impl Workflow for order_saga_v2 {
    const TYPE_ID: &'static str = order_saga::TYPE_ID;
    const FINGERPRINT: &'static str = "order-saga:v2";
    type Input = Order;
    type Output = Receipt;
    type Error = SagaError;
    type State = OrderSagaState;

    fn start(order: Order) -> OrderSagaState {
        OrderSagaState::Start { order }
    }

    fn resume(state: OrderSagaState, ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        match order_saga::resume(state, ctx, wake) {
            Transition::Suspend { state, commands } => Transition::Suspend { state, commands },
            Transition::Complete(r) => Transition::Complete(r),
            Transition::Fail(e) => Transition::Fail(e),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlakyInput {
    /// The attempt that succeeds.
    pub succeed_on: u32,
    /// Fail with a non-retryable error instead.
    pub non_retryable: bool,
}

/// Fails (retryably) until attempt `succeed_on`; returns the attempt that succeeded.
pub struct flaky {}
impl Activity for flaky {
    const TYPE_ID: &'static str = "flaky";
    type Input = FlakyInput;
    type Output = u32;
    async fn execute(ctx: ActivityContext, input: FlakyInput) -> Result<u32, ActivityError> {
        if input.non_retryable {
            Err(ActivityError::non_retryable("invalid card number"))
        } else if ctx.attempt < input.succeed_on {
            Err(ActivityError::retryable(format!(
                "attempt {} failed",
                ctx.attempt
            )))
        } else {
            Ok(ctx.attempt)
        }
    }
    fn options() -> ActivityOptions {
        ActivityOptions {
            retry: RetryPolicy::exponential(5).with_initial_interval(Duration::from_secs(1)),
            start_to_close_timeout: None,
            task_queue: None,
        }
    }
}

/// Sleeps `input` seconds (tokio time) with a 1 s start-to-close timeout, 2 attempts.
pub struct slow {}
impl Activity for slow {
    const TYPE_ID: &'static str = "slow";
    type Input = u64;
    type Output = u64;
    async fn execute(_ctx: ActivityContext, secs: u64) -> Result<u64, ActivityError> {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        Ok(secs)
    }
    fn options() -> ActivityOptions {
        ActivityOptions {
            retry: RetryPolicy::exponential(2).with_initial_interval(Duration::from_millis(500)),
            start_to_close_timeout: Some(Duration::from_secs(1)),
            task_queue: None,
        }
    }
}

/// Sleeps its input in milliseconds: no timeout, no retries (a long-running step).
pub struct patient {}
impl Activity for patient {
    const TYPE_ID: &'static str = "patient";
    type Input = u64;
    type Output = u64;
    async fn execute(_ctx: ActivityContext, ms: u64) -> Result<u64, ActivityError> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(ms)
    }
    fn options() -> ActivityOptions {
        ActivityOptions {
            retry: RetryPolicy::none(),
            start_to_close_timeout: None,
            task_queue: None,
        }
    }
}

/// Runs one activity of type `A` on its input and returns its output.
pub struct single<A>(std::marker::PhantomData<fn() -> A>);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SingleState<I> {
    Start { input: I },
    Waiting,
}

impl<A: Activity> Workflow for single<A>
where
    A::Input: Clone + std::fmt::Debug,
{
    const TYPE_ID: &'static str = A::TYPE_ID;
    const FINGERPRINT: &'static str = "single:v1";
    type Input = A::Input;
    type Output = A::Output;
    type Error = SagaError;
    type State = SingleState<A::Input>;

    fn start(input: A::Input) -> SingleState<A::Input> {
        SingleState::Start { input }
    }

    fn resume(
        state: SingleState<A::Input>,
        _ctx: &mut WorkflowContext,
        wake: Wake,
    ) -> Transition<Self> {
        match state {
            SingleState::Start { input } => Transition::Suspend {
                commands: vec![Command::activity::<A>(&input)],
                state: SingleState::Waiting,
            },
            SingleState::Waiting => Transition::Complete(take!(wake.activity::<A>())),
        }
    }
}

/// Runs activity `A` twice, the second time on the first's output, and returns the
/// second output: the second step is scheduled by a worker, not by the start.
pub struct pair<A>(std::marker::PhantomData<fn() -> A>);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PairState<I> {
    Start { input: I },
    First,
    Second,
}

impl<A: Activity<Output = <A as Activity>::Input>> Workflow for pair<A>
where
    A::Input: Clone + std::fmt::Debug,
{
    const TYPE_ID: &'static str = "pair";
    const FINGERPRINT: &'static str = "pair:v1";
    type Input = A::Input;
    type Output = A::Output;
    type Error = SagaError;
    type State = PairState<A::Input>;

    fn start(input: A::Input) -> PairState<A::Input> {
        PairState::Start { input }
    }

    fn resume(
        state: PairState<A::Input>,
        _ctx: &mut WorkflowContext,
        wake: Wake,
    ) -> Transition<Self> {
        match state {
            PairState::Start { input } => Transition::Suspend {
                commands: vec![Command::activity::<A>(&input)],
                state: PairState::First,
            },
            PairState::First => {
                let first: A::Output = take!(wake.activity::<A>());
                Transition::Suspend {
                    commands: vec![Command::activity::<A>(&first)],
                    state: PairState::Second,
                }
            }
            PairState::Second => Transition::Complete(take!(wake.activity::<A>())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaiterInput {
    /// Sleep this long before waiting (0: wait at once).
    pub sleep_first_secs: u64,
    /// Give up on the signal after this long.
    pub timeout_secs: Option<u64>,
}

/// Optionally sleeps, then waits for signal `go` and returns its payload.
pub struct waiter {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WaiterState {
    Start { input: WaiterInput },
    Sleep { input: WaiterInput },
    Go,
}

impl waiter {
    fn wait(input: &WaiterInput) -> Transition<Self> {
        Transition::Suspend {
            commands: vec![Command::signal(
                "go",
                input.timeout_secs.map(Duration::from_secs),
            )],
            state: WaiterState::Go,
        }
    }
}

impl Workflow for waiter {
    const TYPE_ID: &'static str = "waiter";
    const FINGERPRINT: &'static str = "waiter:v1";
    type Input = WaiterInput;
    type Output = String;
    type Error = SagaError;
    type State = WaiterState;

    fn start(input: WaiterInput) -> WaiterState {
        WaiterState::Start { input }
    }

    fn resume(state: WaiterState, _ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        match state {
            WaiterState::Start { input } if input.sleep_first_secs > 0 => Transition::Suspend {
                commands: vec![Command::sleep(Duration::from_secs(input.sleep_first_secs))],
                state: WaiterState::Sleep { input },
            },
            WaiterState::Start { input } | WaiterState::Sleep { input } => Self::wait(&input),
            WaiterState::Go => Transition::Complete(take!(wake.signal::<String>())),
        }
    }
}

/// Sleeps `input` seconds and returns the recorded wake-up time minus the start time,
/// in seconds, as seen through `ctx.now()`.
pub struct sleeper {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SleeperState {
    Start { secs: u64 },
    Sleep { started_ms: i64 },
}

impl Workflow for sleeper {
    const TYPE_ID: &'static str = "sleeper";
    const FINGERPRINT: &'static str = "sleeper:v1";
    type Input = u64;
    type Output = i64;
    type Error = SagaError;
    type State = SleeperState;

    fn start(secs: u64) -> SleeperState {
        SleeperState::Start { secs }
    }

    fn resume(state: SleeperState, ctx: &mut WorkflowContext, _wake: Wake) -> Transition<Self> {
        match state {
            SleeperState::Start { secs } => Transition::Suspend {
                commands: vec![Command::sleep(Duration::from_secs(secs))],
                state: SleeperState::Sleep {
                    started_ms: ctx.now().timestamp_millis(),
                },
            },
            SleeperState::Sleep { started_ms } => {
                Transition::Complete((ctx.now().timestamp_millis() - started_ms) / 1000)
            }
        }
    }
}

/// A chain of `input` no-op steps through `echo`, for long histories.
pub struct chain {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ChainState {
    Start { steps: u32 },
    Echo { i: u32, steps: u32, sum: u64 },
}

/// Returns its input.
pub struct echo {}
impl Activity for echo {
    const TYPE_ID: &'static str = "echo";
    type Input = u64;
    type Output = u64;
    async fn execute(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
        Ok(n)
    }
}

impl Workflow for chain {
    const TYPE_ID: &'static str = "chain";
    const FINGERPRINT: &'static str = "chain:v1";
    type Input = u32;
    type Output = u64;
    type Error = SagaError;
    type State = ChainState;

    fn start(steps: u32) -> ChainState {
        ChainState::Start { steps }
    }

    fn resume(state: ChainState, _ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        let (i, steps, sum) = match state {
            ChainState::Start { steps } => (0, steps, 0),
            ChainState::Echo { i, steps, sum } => {
                (i + 1, steps, sum + take!(wake.activity::<echo>()))
            }
        };
        if i >= steps {
            return Transition::Complete(sum);
        }
        Transition::Suspend {
            commands: vec![Command::activity::<echo>(&(i as u64))],
            state: ChainState::Echo { i, steps, sum },
        }
    }
}

/// Takes a map with tuple keys, which JSON cannot encode: scheduling it is an invalid
/// command.
pub struct tuple_keys {}
impl Activity for tuple_keys {
    const TYPE_ID: &'static str = "tuple-keys";
    type Input = std::collections::BTreeMap<(u32, u32), u32>;
    type Output = ();
    async fn execute(_ctx: ActivityContext, _m: Self::Input) -> Result<(), ActivityError> {
        Ok(())
    }
}

/// Schedules [`tuple_keys`] with an input that cannot be encoded.
pub struct bad_command {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BadCommandState {
    Start,
    Never,
}

impl Workflow for bad_command {
    const TYPE_ID: &'static str = "bad-command";
    const FINGERPRINT: &'static str = "bad-command:v1";
    type Input = ();
    type Output = ();
    type Error = SagaError;
    type State = BadCommandState;

    fn start(_: ()) -> BadCommandState {
        BadCommandState::Start
    }

    fn resume(state: BadCommandState, _ctx: &mut WorkflowContext, _wake: Wake) -> Transition<Self> {
        match state {
            BadCommandState::Start => Transition::Suspend {
                commands: vec![Command::activity::<tuple_keys>(
                    &[((1, 2), 3)].into_iter().collect(),
                )],
                state: BadCommandState::Never,
            },
            BadCommandState::Never => Transition::Complete(()),
        }
    }
}

/// Runs `echo` once, then panics (a bug in workflow code).
pub struct panicker {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PanickerState {
    Start { at_start: bool },
    Echo,
}

impl Workflow for panicker {
    const TYPE_ID: &'static str = "panicker";
    const FINGERPRINT: &'static str = "panicker:v1";
    /// Panic in the first segment (true) or after the first activity (false).
    type Input = bool;
    type Output = ();
    type Error = SagaError;
    type State = PanickerState;

    fn start(at_start: bool) -> PanickerState {
        PanickerState::Start { at_start }
    }

    fn resume(state: PanickerState, _ctx: &mut WorkflowContext, _wake: Wake) -> Transition<Self> {
        match state {
            PanickerState::Start { at_start: true } => panic!("bug in the first segment"),
            PanickerState::Start { at_start: false } => Transition::Suspend {
                commands: vec![Command::activity::<echo>(&1)],
                state: PanickerState::Echo,
            },
            PanickerState::Echo => panic!("bug after the first step"),
        }
    }
}

/// Two activities in parallel (`ctx.join`), then `n` in parallel (`ctx.join_all`):
/// the variants hold the partial results, as the macro lowers joins.
pub struct parallel {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ParallelState {
    Start {
        n: u64,
    },
    Join {
        n: u64,
        a: Option<u64>,
        b: Option<u64>,
    },
    JoinAll {
        ab: u64,
        results: Vec<Option<u64>>,
    },
}

impl Workflow for parallel {
    const TYPE_ID: &'static str = "parallel";
    const FINGERPRINT: &'static str = "parallel:v1";
    type Input = u64;
    type Output = u64;
    type Error = SagaError;
    type State = ParallelState;

    fn start(n: u64) -> ParallelState {
        ParallelState::Start { n }
    }

    fn resume(state: ParallelState, _ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        use ParallelState as S;
        match state {
            S::Start { n } => Transition::Suspend {
                commands: vec![
                    Command::activity::<echo>(&100),
                    Command::activity::<echo>(&200),
                ],
                state: S::Join {
                    n,
                    a: None,
                    b: None,
                },
            },
            S::Join { n, mut a, mut b } => {
                let slot = wake.slot();
                let v = take!(wake.activity::<echo>());
                if slot == 0 {
                    a = Some(v);
                } else {
                    b = Some(v);
                }
                match (a, b) {
                    (Some(a), Some(b)) if n == 0 => Transition::Complete(a + b),
                    (Some(a), Some(b)) => Transition::Suspend {
                        commands: (0..n).map(|i| Command::activity::<echo>(&i)).collect(),
                        state: S::JoinAll {
                            ab: a + b,
                            results: vec![None; n as usize],
                        },
                    },
                    _ => Transition::Suspend {
                        commands: Vec::new(),
                        state: S::Join { n, a, b },
                    },
                }
            }
            S::JoinAll { ab, mut results } => {
                let slot = wake.slot() as usize;
                let v = take!(wake.activity::<echo>());
                results[slot] = Some(v);
                if results.iter().all(Option::is_some) {
                    Transition::Complete(ab + results.into_iter().flatten().sum::<u64>())
                } else {
                    Transition::Suspend {
                        commands: Vec::new(),
                        state: S::JoinAll { ab, results },
                    }
                }
            }
        }
    }
}

/// Books a room: sleeps its input in milliseconds, then succeeds; undone by
/// [`unbook_room`]. No retries, no timeout: a long compensable step.
pub struct book_room {}
impl Activity for book_room {
    const TYPE_ID: &'static str = "book-room";
    type Input = u64;
    type Output = String;
    async fn execute(ctx: ActivityContext, ms: u64) -> Result<String, ActivityError> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(format!("room-{}", ctx.idempotency_key()))
    }
    fn options() -> ActivityOptions {
        ActivityOptions {
            retry: RetryPolicy::none(),
            start_to_close_timeout: None,
            task_queue: None,
        }
    }
    fn compensation() -> Option<&'static str> {
        Some(unbook_room::TYPE_ID)
    }
}

pub struct unbook_room {}
impl Activity for unbook_room {
    const TYPE_ID: &'static str = "unbook-room";
    type Input = String;
    type Output = ();
    async fn execute(_ctx: ActivityContext, _room: String) -> Result<(), ActivityError> {
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripInput {
    /// How long booking the room takes.
    pub book_ms: u64,
    /// The card check, run beside the booking, fails (non-retryably).
    pub card_declined: bool,
}

/// Books a room ([`book_room`]) and checks the card ([`flaky`]) at once, and returns
/// the room: a workflow that can end (cancelled, or failed by the card check) while
/// its compensable step still runs.
pub struct trip {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TripState {
    Start { input: TripInput },
    Join { room: Option<String>, checked: bool },
}

impl Workflow for trip {
    const TYPE_ID: &'static str = "trip";
    const FINGERPRINT: &'static str = "trip:v1";
    type Input = TripInput;
    type Output = String;
    type Error = SagaError;
    type State = TripState;

    fn start(input: TripInput) -> TripState {
        TripState::Start { input }
    }

    fn resume(state: TripState, _ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        match state {
            TripState::Start { input } => Transition::Suspend {
                commands: vec![
                    Command::activity::<book_room>(&input.book_ms),
                    Command::activity::<flaky>(&FlakyInput {
                        succeed_on: 1,
                        non_retryable: input.card_declined,
                    }),
                ],
                state: TripState::Join {
                    room: None,
                    checked: false,
                },
            },
            TripState::Join {
                mut room,
                mut checked,
            } => {
                if wake.slot() == 0 {
                    room = Some(take!(wake.activity::<book_room>()));
                } else {
                    take!(wake.activity::<flaky>());
                    checked = true;
                }
                match room {
                    Some(room) if checked => Transition::Complete(room),
                    room => Transition::Suspend {
                        commands: Vec::new(),
                        state: TripState::Join { room, checked },
                    },
                }
            }
        }
    }
}

/// The task queue of [`vault_charge`] and [`vault_refund`]: only the workers serving it
/// hold the (imaginary) card vault's credentials.
pub const VAULT_QUEUE: &str = "vault";

/// Charges a card through the vault: runs only on [`VAULT_QUEUE`] workers (its
/// options name the queue); undone by [`vault_refund`], there too.
pub struct vault_charge {}
impl Activity for vault_charge {
    const TYPE_ID: &'static str = "vault-charge";
    type Input = Order;
    type Output = String;
    async fn execute(ctx: ActivityContext, _order: Order) -> Result<String, ActivityError> {
        Ok(format!("vault-{}", ctx.idempotency_key()))
    }
    fn options() -> ActivityOptions {
        ActivityOptions {
            task_queue: Some(VAULT_QUEUE.to_owned()),
            ..ActivityOptions::default()
        }
    }
    fn compensation() -> Option<&'static str> {
        Some(vault_refund::TYPE_ID)
    }
}

pub struct vault_refund {}
impl Activity for vault_refund {
    const TYPE_ID: &'static str = "vault-refund";
    type Input = String;
    type Output = ();
    async fn execute(_ctx: ActivityContext, _charge: String) -> Result<(), ActivityError> {
        Ok(())
    }
    fn options() -> ActivityOptions {
        ActivityOptions {
            task_queue: Some(VAULT_QUEUE.to_owned()),
            ..ActivityOptions::default()
        }
    }
}

/// Charges through the vault ([`vault_charge`], on [`VAULT_QUEUE`]), then ships
/// ([`ship_order`], on the execution's queue) and returns the tracking number: a saga
/// whose steps run on different workers.
pub struct vault_order {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum VaultOrderState {
    Start { order: Order },
    Charge { order: Order },
    Ship,
}

impl Workflow for vault_order {
    const TYPE_ID: &'static str = "vault-order";
    const FINGERPRINT: &'static str = "vault-order:v1";
    type Input = Order;
    type Output = String;
    type Error = SagaError;
    type State = VaultOrderState;

    fn start(order: Order) -> VaultOrderState {
        VaultOrderState::Start { order }
    }

    fn resume(state: VaultOrderState, _ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        match state {
            VaultOrderState::Start { order } => Transition::Suspend {
                commands: vec![Command::activity::<vault_charge>(&order)],
                state: VaultOrderState::Charge { order },
            },
            VaultOrderState::Charge { order } => {
                take!(wake.activity::<vault_charge>());
                Transition::Suspend {
                    commands: vec![Command::activity::<ship_order>(&order)],
                    state: VaultOrderState::Ship,
                }
            }
            VaultOrderState::Ship => {
                let shipment = take!(wake.activity::<ship_order>());
                if !shipment.accepted {
                    return Transition::Fail(SagaError::rejected("carrier rejected the shipment"));
                }
                Transition::Complete(shipment.tracking)
            }
        }
    }
}

/// Runs [`echo`] once: a workflow type whose options put its executions on
/// [`VAULT_QUEUE`], whoever starts them.
pub struct vaulted {}

impl Workflow for vaulted {
    const TYPE_ID: &'static str = "vaulted";
    const FINGERPRINT: &'static str = "vaulted:v1";
    type Input = u64;
    type Output = u64;
    type Error = SagaError;
    type State = SingleState<u64>;

    fn start(n: u64) -> SingleState<u64> {
        SingleState::Start { input: n }
    }

    fn options() -> WorkflowOptions {
        WorkflowOptions {
            task_queue: Some(VAULT_QUEUE.to_owned()),
            ..WorkflowOptions::default()
        }
    }

    fn resume(state: SingleState<u64>, _ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        match state {
            SingleState::Start { input } => Transition::Suspend {
                commands: vec![Command::activity::<echo>(&input)],
                state: SingleState::Waiting,
            },
            SingleState::Waiting => Transition::Complete(take!(wake.activity::<echo>())),
        }
    }
}

/// Runs [`vaulted`] as a child workflow and returns its output: a parent without a
/// queue of its own whose child names one.
pub struct vault_parent {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum VaultParentState {
    Start { n: u64 },
    Child,
}

impl Workflow for vault_parent {
    const TYPE_ID: &'static str = "vault-parent";
    const FINGERPRINT: &'static str = "vault-parent:v1";
    type Input = u64;
    type Output = u64;
    type Error = SagaError;
    type State = VaultParentState;

    fn start(n: u64) -> VaultParentState {
        VaultParentState::Start { n }
    }

    fn resume(state: VaultParentState, _ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        match state {
            VaultParentState::Start { n } => Transition::Suspend {
                commands: vec![Command::child::<vaulted>(None, &n)],
                state: VaultParentState::Child,
            },
            VaultParentState::Child => Transition::Complete(take!(wake.child::<vaulted>())),
        }
    }
}

/// Runs [`flaky`] as a local activity.
pub struct local_flow {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LocalFlowState {
    Start { input: FlakyInput },
    Flaky,
}

impl Workflow for local_flow {
    const TYPE_ID: &'static str = "local-flow";
    const FINGERPRINT: &'static str = "local-flow:v1";
    type Input = FlakyInput;
    type Output = u32;
    type Error = SagaError;
    type State = LocalFlowState;

    fn start(input: FlakyInput) -> LocalFlowState {
        LocalFlowState::Start { input }
    }

    fn resume(state: LocalFlowState, _ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        match state {
            LocalFlowState::Start { input } => Transition::Suspend {
                commands: vec![Command::local_activity::<flaky>(&input)],
                state: LocalFlowState::Flaky,
            },
            LocalFlowState::Flaky => Transition::Complete(take!(wake.activity::<flaky>())),
        }
    }
}

/// Runs an [`order_saga`] as a child workflow and returns its tracking number.
pub struct parent_flow {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ParentFlowState {
    Start { order: Order },
    OrderSaga,
}

impl Workflow for parent_flow {
    const TYPE_ID: &'static str = "parent-flow";
    const FINGERPRINT: &'static str = "parent-flow:v1";
    type Input = Order;
    type Output = String;
    type Error = SagaError;
    type State = ParentFlowState;

    fn start(order: Order) -> ParentFlowState {
        ParentFlowState::Start { order }
    }

    fn resume(state: ParentFlowState, _ctx: &mut WorkflowContext, wake: Wake) -> Transition<Self> {
        match state {
            ParentFlowState::Start { order } => Transition::Suspend {
                commands: vec![Command::child::<order_saga>(None, &order)],
                state: ParentFlowState::OrderSaga,
            },
            ParentFlowState::OrderSaga => {
                let receipt = take!(wake.child::<order_saga>());
                Transition::Complete(receipt.shipment.tracking)
            }
        }
    }
}

/// Calls every recorded synchronous call, sleeps, and calls `random` again.
pub struct recorder {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub random: u64,
    pub uuid: String,
    pub side_effect: String,
    pub now_ms: i64,
    pub random_after_sleep: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RecorderState {
    Start {
        sleep_secs: u64,
    },
    Sleep {
        random: u64,
        uuid: String,
        side_effect: String,
        now_ms: i64,
    },
}

impl Workflow for recorder {
    const TYPE_ID: &'static str = "recorder";
    const FINGERPRINT: &'static str = "recorder:v1";
    type Input = u64;
    type Output = Recorded;
    type Error = SagaError;
    type State = RecorderState;

    fn start(sleep_secs: u64) -> RecorderState {
        RecorderState::Start { sleep_secs }
    }

    fn resume(state: RecorderState, ctx: &mut WorkflowContext, _wake: Wake) -> Transition<Self> {
        match state {
            RecorderState::Start { sleep_secs } => {
                let random = ctx.random();
                let uuid = ctx.uuid();
                // Deliberately nondeterministic: only the recorded value may come back.
                let side_effect = ctx.side_effect(|| format!("{:?}", std::time::SystemTime::now()));
                let now_ms = ctx.now().timestamp_millis();
                Transition::Suspend {
                    commands: vec![Command::sleep(Duration::from_secs(sleep_secs))],
                    state: RecorderState::Sleep {
                        random,
                        uuid,
                        side_effect,
                        now_ms,
                    },
                }
            }
            RecorderState::Sleep {
                random,
                uuid,
                side_effect,
                now_ms,
            } => Transition::Complete(Recorded {
                random,
                uuid,
                side_effect,
                now_ms,
                random_after_sleep: ctx.random(),
            }),
        }
    }
}
