//! `#[workflow]`: the lowering pipeline, phase by phase.

mod codegen;
pub(crate) mod determinism;
mod diagram;
mod fingerprint;
pub(crate) mod ir;
mod liveness;
mod lower;
mod parse;
mod types;
mod validate;

use std::cell::Cell;

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

use crate::ctxt::Ctxt;
use crate::names;

/// `#[workflow]`: parse → determinism → lower → liveness → types → codegen.
pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: syn::ItemFn = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(e) => {
            let err = syn::Error::new(
                e.span(),
                "`#[workflow]` applies to an `async fn name(ctx: &mut WorkflowContext, input: In) -> Result<Out, E>`",
            );
            let mut out = input;
            out.extend(err.into_compile_error());
            return out;
        }
    };
    let cx = Ctxt::new();
    let args = parse::args(&cx, args);
    let Some(sig) = parse::signature(&cx, &item) else {
        determinism::check(&cx, &item.block, None);
        return fallback(&item, None, cx.check().err());
    };
    determinism::check(&cx, &item.block, Some(&sig.ctx));
    let body = parse::body(&cx, &sig);
    if cx.has_errors() {
        return fallback(&item, Some(&sig), cx.check().err());
    }
    let cfg = lower::lower(&body);
    let live = liveness::analyze(&cfg);
    let (start, fields) = types::layout(&cx, &body, &sig.ctx, &live.start, &live.at);
    if let Err(e) = cx.check() {
        return fallback(&item, Some(&sig), Some(e));
    }
    let variants = codegen::variant_names(&body);
    validate::validate(&body, &start, &fields, &variants);
    let type_id = match &args.name {
        Some(lit) => lit.value(),
        None => names::type_id(&item.sig.ident),
    };
    let fingerprint = fingerprint::fingerprint(&type_id, &body, &start, &fields, &variants);
    let diagram = diagram::mermaid(&body, &cfg, &variants);
    let state = syn::Ident::new(
        &format!(
            "{}State",
            names::camel(&names::unraw(&item.sig.ident), "Workflow")
        ),
        item.sig.ident.span(),
    );
    codegen::Machine {
        sig: &sig,
        args: &args,
        body: &body,
        cfg: &cfg,
        start,
        fields,
        variants,
        type_id,
        state,
        fingerprint,
        diagram,
        flags: Cell::new(0),
    }
    .generate()
}

/// On error: the handle with a stub `Workflow` impl (so registrations and calls of it
/// do not cascade into more errors), and every error.
fn fallback(
    item: &syn::ItemFn,
    sig: Option<&parse::Signature<'_>>,
    err: Option<syn::Error>,
) -> TokenStream {
    let ident = &item.sig.ident;
    let vis = &item.vis;
    let mut out = quote! {
        #[allow(non_camel_case_types)]
        #vis struct #ident {}
    };
    if let Some(sig) = sig {
        let input = match sig.input {
            Some((_, ty)) => ty.to_token_stream(),
            None => quote!(()),
        };
        let (output, error) = (&sig.output, &sig.error);
        let type_id = names::type_id(ident);
        out.extend(quote! {
            const _: () = {
                impl ::saga_runtime::workflow::Workflow for #ident {
                    const TYPE_ID: &'static str = #type_id;
                    const FINGERPRINT: &'static str = "";
                    type Input = #input;
                    type Output = #output;
                    type Error = #error;
                    type State = ();
                    fn start(_: Self::Input) -> Self::State {}
                    fn resume(
                        _: (),
                        _: &mut ::saga_runtime::workflow::WorkflowContext,
                        _: ::saga_runtime::workflow::Wake,
                    ) -> ::saga_runtime::workflow::Transition<Self> {
                        ::core::unreachable!()
                    }
                }
            };
        });
    }
    if let Some(e) = err {
        out.extend(e.into_compile_error());
    }
    out
}

/// `#[deterministic]`: the determinism checks on a helper fn, which is otherwise kept.
pub(crate) fn expand_deterministic(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut item: syn::ItemFn = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(e) => {
            let mut out = input;
            out.extend(
                syn::Error::new(e.span(), "`#[deterministic]` applies to a fn")
                    .into_compile_error(),
            );
            return out;
        }
    };
    let cx = Ctxt::new();
    if !args.is_empty() {
        cx.error_spanned_by(&args, "`#[deterministic]` takes no arguments");
    }
    determinism::check(&cx, &item.block, None);
    syn::visit_mut::VisitMut::visit_block_mut(&mut determinism::StripEscapeHatch, &mut item.block);
    let mut out = item.to_token_stream();
    if let Err(e) = cx.check() {
        out.extend(e.into_compile_error());
    }
    out
}

#[cfg(test)]
mod tests;
