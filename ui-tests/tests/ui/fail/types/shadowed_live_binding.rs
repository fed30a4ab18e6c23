use saga_runtime::prelude::*;
use ui_tests::acts::double;

#[workflow]
async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
    let x: u64 = n;
    {
        let x: String = n.to_string();
        let d = ctx.activity(double, n).await?;
        let _ = (x, d);
    }
    Ok(x)
}

fn main() {}
