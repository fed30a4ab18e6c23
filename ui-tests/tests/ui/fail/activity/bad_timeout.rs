use saga_runtime::prelude::*;

#[activity(timeout = "30 parsecs")]
async fn slow(n: u64) -> Result<u64, ActivityError> {
    Ok(n)
}

#[activity(timeout = 30)]
async fn slower(n: u64) -> Result<u64, ActivityError> {
    Ok(n)
}

fn main() {}
