use saga_runtime::prelude::*;

#[derive(Debug)]
struct MyError;

#[activity]
async fn step(n: u64) -> Result<u64, MyError> {
    Ok(n)
}

fn main() {}
