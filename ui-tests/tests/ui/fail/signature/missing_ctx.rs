use saga_runtime::prelude::*;

#[workflow]
async fn flow(n: u64) -> Result<u64, SagaError> {
    Ok(n)
}

fn main() {}
