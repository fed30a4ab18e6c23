use saga_runtime::prelude::*;

#[activity(compensation = undo)]
async fn step(n: u64) -> Result<u64, ActivityError> {
    Ok(n)
}

fn main() {}
