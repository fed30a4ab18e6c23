use saga_runtime::prelude::*;

#[activity(compensate = refund)]
async fn charge(amount: u64) -> Result<String, ActivityError> {
    Ok(format!("payment for {amount}"))
}

#[activity]
async fn refund(amount: u64) -> Result<(), ActivityError> {
    let _ = amount;
    Ok(())
}

fn main() {}
