//! `#[activity]`: the type handle and its `Activity` impl.
//!
//! Input:
//!
//! ```text
//! #[activity(compensate = refund_payment, timeout = "30s", task_queue = "payments")]
//! pub async fn charge_payment(ctx: ActivityContext, p: PaymentRequest) -> Result<Payment, ActivityError> { .. }
//! ```
//!
//! Output: the fn unchanged (still callable), plus
//!
//! ```text
//! pub struct charge_payment {}
//! const _: () = {
//!     impl Activity for charge_payment {
//!         const TYPE_ID = "charge-payment"; type Input = PaymentRequest; type Output = Payment;
//!         fn execute(ctx, input) -> impl Future<..> { async move { map_err(charge_payment(ctx, input).await) } }
//!         fn options() -> ActivityOptions { .. timeout 30 s, queue "payments" .. }
//!         fn compensation() -> Option<&'static str> { Some(refund_payment::TYPE_ID) }
//!     }
//!     // compile-time check: refund_payment's input is charge_payment's output
//! };
//! ```
//!
//! A fn and a braced struct live in different namespaces (value and type), so both
//! can be named `charge_payment`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

use crate::ctxt::Ctxt;
use crate::names;

/// Parsed `#[activity(..)]` arguments.
#[derive(Default)]
struct Args {
    compensate: Option<syn::Path>,
    retry: Option<syn::Expr>,
    timeout: Option<(std::time::Duration, Span)>,
    task_queue: Option<syn::LitStr>,
    name: Option<syn::LitStr>,
}

/// What the macro learned from the fn.
struct Activity<'a> {
    item: &'a syn::ItemFn,
    has_ctx: bool,
    input_ty: syn::Type,
    /// `Some(E)` when the fn returns `Result<T, E>` (`None` for `Result<T>` aliases).
    returns_result: Option<Option<syn::Type>>,
    output_ty: syn::Type,
}

pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: syn::ItemFn = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(e) => {
            let err = syn::Error::new(
                e.span(),
                "`#[activity]` applies to a fn: `async fn name(ctx: ActivityContext, input: In) -> Result<Out, E>`",
            );
            let mut out = input;
            out.extend(err.into_compile_error());
            return out;
        }
    };
    let cx = Ctxt::new();
    let args = parse_args(&cx, args);
    let activity = analyze(&cx, &item);
    let result = cx.check();
    match (result, activity) {
        (Ok(()), Some(a)) => generate(&args, &a),
        (Err(e), _) => fallback(&item, e),
        (Ok(()), None) => unreachable!("this is a bug in saga-macros: analysis failed silently"),
    }
}

/// Parses `compensate = f, retry = <expr>, timeout = "30s", task_queue = "q", name = "id"`.
fn parse_args(cx: &Ctxt, args: TokenStream) -> Args {
    let mut out = Args::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("compensate") {
            out.compensate = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("retry") {
            out.retry = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("timeout") {
            let lit: syn::LitStr = meta.value()?.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "expected a duration string, e.g. `timeout = \"30s\"`",
                )
            })?;
            match names::parse_duration(&lit.value()) {
                Ok(d) => out.timeout = Some((d, lit.span())),
                Err(why) => cx.error_spanned_by(
                    &lit,
                    format!(
                        "invalid duration `{}`: {why}; e.g. `\"30s\"`, `\"500ms\"`, `\"1h30m\"`",
                        lit.value()
                    ),
                ),
            }
        } else if meta.path.is_ident("task_queue") {
            out.task_queue = names::task_queue_arg(cx, &meta, "payments")?;
        } else if meta.path.is_ident("name") {
            out.name = Some(meta.value()?.parse()?);
        } else {
            return Err(meta.error(format!(
                "unknown `#[activity]` argument `{}`; expected `compensate`, `retry`, `timeout`, `task_queue` or `name`",
                meta.path.to_token_stream()
            )));
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(e);
    }
    out
}

/// Checks the signature: async or not, an optional `ActivityContext`, one input.
fn analyze<'a>(cx: &Ctxt, item: &'a syn::ItemFn) -> Option<Activity<'a>> {
    let sig = &item.sig;
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            "an activity cannot be generic; its type handle must be a single type",
        );
    }
    let mut has_ctx = false;
    let mut inputs = Vec::new();
    for (i, arg) in sig.inputs.iter().enumerate() {
        match arg {
            syn::FnArg::Receiver(r) => {
                cx.error_spanned_by(r, "an activity is a free fn; `self` is not supported")
            }
            syn::FnArg::Typed(pt) => {
                if i == 0 && last_segment_is(&pt.ty, "ActivityContext") {
                    has_ctx = true;
                } else {
                    inputs.push(pt);
                }
            }
        }
    }
    let input_ty = match inputs.as_slice() {
        [] => syn::parse_quote!(()),
        [one] => (*one.ty).clone(),
        [_, extra, ..] => {
            cx.error_spanned_by(
                extra,
                "an activity takes one input; group the values in a struct or a tuple",
            );
            syn::parse_quote!(())
        }
    };
    let (returns_result, output_ty) = match &sig.output {
        syn::ReturnType::Default => (None, syn::parse_quote!(())),
        syn::ReturnType::Type(_, ty) => match result_args(ty) {
            Some((ok, err)) => (Some(err), ok),
            None => (None, (**ty).clone()),
        },
    };
    Some(Activity {
        item,
        has_ctx,
        input_ty,
        returns_result,
        output_ty,
    })
}

/// `true` if `ty` is a path whose last segment is `name`.
pub(crate) fn last_segment_is(ty: &syn::Type, name: &str) -> bool {
    match ty {
        syn::Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == name),
        _ => false,
    }
}

/// `Result<T, E>` → `(T, Some(E))`; `Result<T>` (an alias) → `(T, None)`.
pub(crate) fn result_args(ty: &syn::Type) -> Option<(syn::Type, Option<syn::Type>)> {
    let syn::Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut tys = args.args.iter().filter_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    let ok = tys.next()?;
    Some((ok, tys.next()))
}

fn generate(args: &Args, a: &Activity<'_>) -> TokenStream {
    let item = a.item;
    let ident = &item.sig.ident;
    let vis = &item.vis;
    let type_id = match &args.name {
        Some(lit) => lit.value(),
        None => names::type_id(ident),
    };
    let input_ty = &a.input_ty;
    let output_ty = &a.output_ty;
    let ctx = Ident::mixed("__ctx");
    let input = Ident::mixed("__input");
    let call_args = if a.has_ctx {
        quote!(#ctx, #input)
    } else {
        quote!(#input)
    };
    let call = match &item.sig.asyncness {
        Some(_) => quote!(#ident(#call_args).await),
        None => quote!(#ident(#call_args)),
    };
    let body = match &a.returns_result {
        Some(err) => {
            let span = err
                .as_ref()
                .map_or_else(|| item.sig.output.span(), |e| e.span());
            quote_spanned! {span=>
                match #call {
                    ::core::result::Result::Ok(v) => ::core::result::Result::Ok(v),
                    ::core::result::Result::Err(e) => ::core::result::Result::Err(
                        ::core::convert::Into::<::saga_runtime::activity::ActivityError>::into(e),
                    ),
                }
            }
        }
        None => quote!(::core::result::Result::Ok(#call)),
    };
    let ctx_pat = if a.has_ctx { quote!(#ctx) } else { quote!(_) };
    let options = if args.retry.is_some() || args.timeout.is_some() || args.task_queue.is_some() {
        let retry = match &args.retry {
            Some(e) => quote_spanned!(e.span()=> #e),
            None => quote!(
                <::saga_runtime::activity::ActivityOptions as ::core::default::Default>::default()
                    .retry
            ),
        };
        let timeout = names::duration_tokens(args.timeout.map(|(d, _)| d));
        let task_queue = names::queue_tokens(args.task_queue.as_ref());
        quote! {
            fn options() -> ::saga_runtime::activity::ActivityOptions {
                ::saga_runtime::activity::ActivityOptions {
                    retry: #retry,
                    start_to_close_timeout: #timeout,
                    task_queue: #task_queue,
                }
            }
        }
    } else {
        quote!()
    };
    let (compensation, check) = match &args.compensate {
        Some(comp) => {
            let span = comp.span();
            (
                quote_spanned! {span=>
                    fn compensation() -> ::core::option::Option<&'static str> {
                        ::core::option::Option::Some(<#comp as ::saga_runtime::activity::Activity>::TYPE_ID)
                    }
                },
                quote_spanned! {span=>
                    let _ = ::saga_runtime::__private::assert_compensates::<
                        #comp,
                        <#ident as ::saga_runtime::activity::Activity>::Output,
                    >;
                },
            )
        }
        None => (quote!(), quote!()),
    };
    let doc = format!(
        " The activity handle of [`{}()`]: register it with `activity::<{}>()`.",
        names::unraw(ident),
        ident
    );
    quote! {
        #item

        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis struct #ident {}

        const _: () = {
            #[automatically_derived]
            impl ::saga_runtime::activity::Activity for #ident {
                const TYPE_ID: &'static str = #type_id;
                type Input = #input_ty;
                type Output = #output_ty;

                fn execute(
                    #ctx_pat: ::saga_runtime::activity::ActivityContext,
                    #input: Self::Input,
                ) -> impl ::core::future::Future<
                    Output = ::core::result::Result<Self::Output, ::saga_runtime::activity::ActivityError>,
                > + ::core::marker::Send {
                    async move { #body }
                }

                #options
                #compensation
            }

            #check
        };
    }
}

/// On error: the fn as written (so calls to it still resolve) and the errors, but no
/// handle, so nothing else reports against a half-made impl.
fn fallback(item: &syn::ItemFn, err: syn::Error) -> TokenStream {
    let ident = &item.sig.ident;
    let vis = &item.vis;
    let mut out = item.to_token_stream();
    out.extend(quote! {
        #[allow(non_camel_case_types)]
        #vis struct #ident {}
    });
    out.extend(err.into_compile_error());
    out
}

/// Hygienic identifiers for generated locals: invisible to (and unclashing with) the
/// user's code.
pub(crate) struct Ident;

impl Ident {
    pub(crate) fn mixed(name: &str) -> syn::Ident {
        syn::Ident::new(name, Span::mixed_site())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pretty(tokens: TokenStream) -> String {
        let file: syn::File = syn::parse2(tokens).expect("expansion parses as a file");
        prettyplease::unparse(&file)
    }

    #[test]
    fn expands_with_every_argument() {
        let out = expand(
            quote!(
                compensate = refund_payment,
                retry = RetryPolicy::exponential(5),
                timeout = "30s",
                task_queue = "payments"
            ),
            quote! {
                pub async fn charge_payment(ctx: ActivityContext, p: PaymentRequest) -> Result<Payment, ActivityError> {
                    Ok(Payment::from(p))
                }
            },
        );
        insta::assert_snapshot!(pretty(out));
    }

    #[test]
    fn expands_a_plain_fn_without_context() {
        let out = expand(
            quote!(name = "double-it"),
            quote! {
                fn double(n: u64) -> u64 { n * 2 }
            },
        );
        insta::assert_snapshot!(pretty(out));
    }

    #[test]
    fn reports_every_bad_argument() {
        let out = expand(
            quote!(timeout = "soon", task_queue = "", colour = "red"),
            quote! { async fn f(a: u8, b: u8) {} },
        );
        let text = out.to_string();
        assert!(text.contains("invalid task queue name ``"), "{text}");
        assert!(
            text.contains("unknown `#[activity]` argument `colour`"),
            "{text}"
        );
        assert!(text.contains("an activity takes one input"), "{text}");
    }
}
