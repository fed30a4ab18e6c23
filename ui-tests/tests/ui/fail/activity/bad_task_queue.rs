use saga_runtime::prelude::*;

#[activity(task_queue = "payments.eu")]
async fn charge(n: u64) -> Result<u64, ActivityError> {
    Ok(n)
}

#[activity(task_queue = payments)]
async fn refund(n: u64) -> Result<u64, ActivityError> {
    Ok(n)
}

fn main() {}
