//! A loop over items and a parallel join: price every line of a cart one by one
//! (a durable loop: a crash between two lines resumes at the next line), then check
//! stock and fraud for the whole cart in parallel, and charge the total.
//!
//! Run: `cargo run -p examples --bin price_batch`

use saga_adapters::SqliteStore;
use saga_runtime::port::{EventStore, ExecutionFilter};
use saga_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    pub customer: String,
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invoice {
    pub total_cents: u64,
    pub priced_lines: u32,
    pub charge_id: String,
}

#[activity]
async fn price_line(line: Line) -> Result<u64, ActivityError> {
    let unit = 100 + line.sku.len() as u64 * 25;
    Ok(unit * u64::from(line.quantity))
}

#[activity]
async fn check_stock(lines: Vec<Line>) -> Result<bool, ActivityError> {
    Ok(lines.iter().all(|l| l.quantity <= 10))
}

#[activity]
async fn check_fraud(customer: String) -> Result<bool, ActivityError> {
    Ok(customer != "mallory")
}

#[activity(compensate = refund)]
async fn charge(total_cents: u64) -> Result<String, ActivityError> {
    Ok(format!("ch-{total_cents}"))
}

#[activity]
async fn refund(_charge_id: String) -> Result<(), ActivityError> {
    Ok(())
}

#[workflow]
async fn price_batch(ctx: &mut WorkflowContext, cart: Cart) -> Result<Invoice, SagaError> {
    let lines: Vec<Line> = cart.lines.clone();
    let mut total_cents: u64 = 0;
    let mut priced_lines: u32 = 0;
    for line in lines {
        if line.quantity == 0 {
            continue;
        }
        total_cents += ctx.activity(price_line, line).await?;
        priced_lines += 1;
    }
    let (stock, fraud) = ctx
        .join((
            ctx.activity(check_stock, cart.lines.clone()),
            ctx.activity(check_fraud, cart.customer.clone()),
        ))
        .await;
    if !stock? {
        return Err(SagaError::rejected("not enough stock"));
    }
    if !fraud? {
        return Err(SagaError::rejected("fraud check failed"));
    }
    let charge_id = ctx.activity(charge, total_cents).await?;
    Ok(Invoice {
        total_cents,
        priced_lines,
        charge_id,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // The embedded default store, shared with the order saga example (`SAGA_DB`).
    let path = std::env::var("SAGA_DB").unwrap_or_else(|_| "saga.db".to_owned());
    let store = SqliteStore::open(&path).await?;
    let filter = ExecutionFilter {
        workflow_type: Some(<price_batch as Workflow>::TYPE_ID.to_owned()),
        ..Default::default()
    };
    let earlier = store.list_executions(&filter).await?.len();
    // Fresh ids on every run over the same file.
    let (first, second) = (
        format!("cart-{}", earlier + 1),
        format!("cart-{}", earlier + 2),
    );
    let engine = SagaEngine::builder()
        .store(store)
        .workflow::<price_batch>()
        .activities([
            activity::<price_line>(),
            activity::<check_stock>(),
            activity::<check_fraud>(),
            activity::<charge>(),
            activity::<refund>(),
        ])
        .build()
        .await?;
    println!("{}", price_batch::diagram());
    let cart = Cart {
        customer: "alice".into(),
        lines: vec![
            Line {
                sku: "tea".into(),
                quantity: 2,
            },
            Line {
                sku: "kettle".into(),
                quantity: 1,
            },
            Line {
                sku: "mug".into(),
                quantity: 0,
            },
        ],
    };
    let invoice = engine
        .start::<price_batch>(first.as_str(), cart)
        .await?
        .result()
        .await?;
    println!("{first}: {invoice:?}");
    for e in engine.history(first.as_str()).await? {
        println!("  #{:<3} {}", e.event_id, e.event_type.name());
    }
    let cart = Cart {
        customer: "mallory".into(),
        lines: vec![Line {
            sku: "gold".into(),
            quantity: 1,
        }],
    };
    match engine
        .start::<price_batch>(second.as_str(), cart)
        .await?
        .result()
        .await
    {
        Ok(i) => println!("{second}: unexpected {i:?}"),
        Err(e) => println!("{second} did not complete: {e}"),
    }
    println!(
        "{second} final status: {}",
        engine.describe(second.as_str()).await?.status
    );
    Ok(())
}
