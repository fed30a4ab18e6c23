use saga_runtime::prelude::*;

#[activity]
async fn add(ctx: ActivityContext, a: u64, b: u64) -> Result<u64, ActivityError> {
    let _ = ctx;
    Ok(a + b)
}

fn main() {}
