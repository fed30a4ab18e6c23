//! Expansion snapshots and analysis unit tests.

use proc_macro2::TokenStream;
use quote::quote;

pub(crate) fn pretty(tokens: TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(e) => panic!("expansion does not parse ({e}):\n{tokens}"),
    }
}

#[test]
fn order_saga_expansion() {
    let out = super::expand(
        quote!(),
        quote! {
            async fn order_saga(ctx: &mut WorkflowContext, order: Order) -> Result<Receipt, SagaError> {
                let reservation = ctx.activity(reserve_inventory, order.clone()).await?;
                let payment = ctx.activity(charge_payment, order.payment()).await?;
                if order.needs_approval {
                    let approval: Approval = ctx.signal("approval").timeout(Duration::from_secs(3600)).await?;
                    if !approval.granted {
                        return Err(SagaError::rejected("not approved"));
                    }
                }
                let shipment = ctx.activity(ship_order, order).await?;
                Ok(Receipt { reservation, payment, shipment })
            }
        },
    );
    insta::assert_snapshot!(pretty(out));
}
