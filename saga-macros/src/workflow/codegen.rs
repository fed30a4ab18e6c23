//! Phase 6: the state enum, `start`, `resume` and the checkpoint table.
//!
//! `resume` has one arm per variant. The `Start` arm runs the body from the top; a
//! checkpoint's arm decodes the wake, binds the value as the user wrote, and runs the
//! *continuation* of that checkpoint: the rest of its block, then the rest of every
//! enclosing block, re-entering enclosing loops. Every checkpoint reached on the way
//! suspends: it builds its commands, moves the live bindings into its variant and
//! returns. Plain statements are re-emitted as written, with `?` and `return`
//! rewritten into transitions.
//!
//! Input (a checkpoint inside a loop):
//!
//! ```text
//! let mut total: u64 = 0;
//! for item in items {                        // items: Vec<Item>
//!     total += ctx.activity(price, item).await?;
//! }
//! Ok(total)
//! ```
//!
//! Output (the `Price` arm):
//!
//! ```text
//! State::Price { mut total, mut cursor } => {
//!     let value = match wake.activity::<price>() { Ok(v) => v, Err(e) => return Fail(e.into()) };
//!     total += value;                         // (the bind, then the rest of the body)
//!     let mut resumed = true;
//!     loop {
//!         if resumed { resumed = false; /* rest of this iteration: nothing */ }
//!         else { let item = match cursor.next() { Some(v) => v, None => break };
//!                return Suspend { commands: vec![Command::activity::<price>(&item)],
//!                                 state: State::Price { total, cursor } }; }
//!     }
//!     return finish(Ok(total));
//! }
//! ```

use std::cell::Cell;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;

use super::ir::*;
use super::parse::{Args, Signature};
use super::types::{self, Field};
use crate::names;

/// Everything codegen needs, computed by the earlier phases.
pub(crate) struct Machine<'m, 'a> {
    pub(crate) sig: &'m Signature<'a>,
    pub(crate) args: &'m Args,
    pub(crate) body: &'m Body<'a>,
    pub(crate) cfg: &'m super::lower::Cfg,
    pub(crate) start: Vec<Field>,
    pub(crate) fields: Vec<Vec<Field>>,
    pub(crate) variants: Vec<syn::Ident>,
    pub(crate) type_id: String,
    pub(crate) state: syn::Ident,
    pub(crate) fingerprint: String,
    pub(crate) diagram: String,
    pub(crate) flags: Cell<usize>,
}

fn mixed(name: &str) -> syn::Ident {
    syn::Ident::new(name, Span::mixed_site())
}

/// Variant names: after what they await (`ReserveInventory`, `ChargePayment2`).
pub(crate) fn variant_names(body: &Body<'_>) -> Vec<syn::Ident> {
    let mut used = vec!["Start".to_owned(), "Finished".to_owned()];
    body.checkpoints
        .iter()
        .map(|cp| {
            let base = match &cp.kind {
                CpKind::Single(Call::Activity { handle, .. } | Call::Child { handle, .. }) => {
                    let last = handle
                        .segments
                        .last()
                        .map(|s| names::unraw(&s.ident))
                        .unwrap_or_default();
                    names::camel(&last, "Step")
                }
                CpKind::Single(Call::Sleep { .. }) => "Sleep".to_owned(),
                CpKind::Single(Call::Signal { name, .. }) => match name {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }) => names::camel(&s.value(), "Signal"),
                    _ => "Signal".to_owned(),
                },
                CpKind::Join(_) => "Join".to_owned(),
                CpKind::JoinAll { .. } => "JoinAll".to_owned(),
            };
            let mut name = base.clone();
            let mut n = 2;
            while used.contains(&name) {
                name = format!("{base}{n}");
                n += 1;
            }
            used.push(name.clone());
            syn::Ident::new(&name, Span::call_site())
        })
        .collect()
}

/// The `__saga_joinN` fields of a join's partial results.
fn join_field(i: usize) -> syn::Ident {
    mixed(&format!("__saga_join{i}"))
}

impl Machine<'_, '_> {
    fn var(&self, v: VarId) -> &syn::Ident {
        &self.body.vars[v].ident
    }

    /// `ident` or `mut ident` for a binding restored from a variant.
    fn field_pat(&self, f: &Field) -> TokenStream {
        let ident = self.var(f.var);
        if self.body.vars[f.var].mutable {
            quote!(mut #ident)
        } else {
            quote!(#ident)
        }
    }

    fn has_join_all(&self) -> bool {
        self.body
            .checkpoints
            .iter()
            .any(|c| matches!(c.kind, CpKind::JoinAll { .. }))
    }

    pub(crate) fn generate(&self) -> TokenStream {
        let sig = self.sig;
        let item = sig.item;
        let vis = &item.vis;
        let name = &item.sig.ident;
        let state = &self.state;
        let enum_def = self.state_enum();
        let type_id = &self.type_id;
        let fingerprint = &self.fingerprint;
        let diagram = &self.diagram;
        let output = &sig.output;
        let error = &sig.error;
        let input_ty = match sig.input {
            Some((_, ty)) => ty.to_token_stream(),
            None => quote!(()),
        };
        let start_fields: Vec<&syn::Ident> = self.start.iter().map(|f| self.var(f.var)).collect();
        let start_param = match (sig.input, start_fields.is_empty()) {
            (Some((pi, _)), false) => pi.ident.to_token_stream(),
            _ => quote!(_),
        };
        let resume = self.resume();
        let checkpoints = self.checkpoint_table();
        let options = if self.args.timeout.is_some() || self.args.task_queue.is_some() {
            let timeout = names::duration_tokens(self.args.timeout);
            let task_queue = names::queue_tokens(self.args.task_queue.as_ref());
            quote! {
                fn options() -> ::saga_runtime::workflow::WorkflowOptions {
                    ::saga_runtime::workflow::WorkflowOptions {
                        timeout: #timeout,
                        task_queue: #task_queue,
                    }
                }
            }
        } else {
            quote!()
        };
        let doc = format!(
            " The workflow handle of `{}`: register it with `.workflow::<{}>()`, start it with `engine.start::<{}>(id, input)`.",
            names::unraw(name),
            name,
            name
        );
        let attrs = item.attrs.iter().filter(|a| a.path().is_ident("doc"));
        quote! {
            #(#attrs)*
            #[doc = #doc]
            #[allow(non_camel_case_types)]
            #vis struct #name {}

            #enum_def

            const _: () = {
                #[automatically_derived]
                impl ::saga_runtime::workflow::Workflow for #name {
                    const TYPE_ID: &'static str = #type_id;
                    const FINGERPRINT: &'static str = #fingerprint;
                    type Input = #input_ty;
                    type Output = #output;
                    type Error = #error;
                    type State = #state;

                    fn start(#start_param: Self::Input) -> Self::State {
                        #state::Start { #(#start_fields),* }
                    }

                    #resume

                    fn checkpoints() -> &'static [::saga_runtime::workflow::Checkpoint] {
                        #checkpoints
                    }

                    fn diagram() -> &'static str {
                        #diagram
                    }

                    #options
                }
            };
        }
    }

    fn state_enum(&self) -> TokenStream {
        let vis = &self.sig.item.vis;
        let state = &self.state;
        let fields = |fields: &[Field]| -> Vec<TokenStream> {
            fields
                .iter()
                .map(|f| {
                    let ident = self.var(f.var);
                    let ty = &f.ty;
                    let doc = format!(" `{}`", names::unraw(ident));
                    quote!(#[doc = #doc] #ident: #ty)
                })
                .collect()
        };
        let start = fields(&self.start);
        let variants = self.body.checkpoints.iter().enumerate().map(|(i, cp)| {
            let v = &self.variants[i];
            let mut fs = fields(&self.fields[i]);
            match &cp.kind {
                CpKind::Join(calls) => {
                    for (j, call) in calls.iter().enumerate() {
                        let f = join_field(j);
                        let ty = types::branch_ty(call);
                        let doc = format!(" The result of branch {j}, once in.");
                        fs.push(quote!(#[doc = #doc] #f: ::core::option::Option<#ty>));
                    }
                }
                CpKind::JoinAll { call, .. } => {
                    let f = mixed("__saga_results");
                    let ty = types::branch_ty(call);
                    fs.push(quote!(#[doc = " The result of each branch, once in."] #f: ::std::vec::Vec<::core::option::Option<#ty>>));
                }
                CpKind::Single(_) => {}
            }
            let doc = format!(" Waits for {}.", types::describe(&self.sig.ctx.to_string(), cp));
            quote!(#[doc = #doc] #v { #(#fs),* })
        });
        let doc = format!(
            " The state of a `{}` execution: one variant per checkpoint, holding the locals live there.",
            names::unraw(&self.sig.item.sig.ident)
        );
        quote! {
            #[doc = #doc]
            #[derive(
                ::core::fmt::Debug,
                ::core::clone::Clone,
                ::saga_runtime::__private::serde::Serialize,
                ::saga_runtime::__private::serde::Deserialize,
            )]
            #[serde(crate = "::saga_runtime::__private::serde")]
            #vis enum #state {
                #[doc = " Not started yet: holds the input."]
                Start { #(#start),* },
                #(#variants,)*
                #[doc = " Completed or failed: nothing is left to run."]
                Finished,
            }
        }
    }

    fn checkpoint_table(&self) -> TokenStream {
        let rows = self.body.checkpoints.iter().enumerate().map(|(i, cp)| {
            let id = i as u32;
            let variant = self.variants[i].to_string();
            let line = cp.line;
            let kind = format_ident!("{}", cp.kind.kind_name());
            let awaits = cp.kind.awaits();
            quote! {
                ::saga_runtime::workflow::Checkpoint {
                    id: #id,
                    variant: #variant,
                    line: #line,
                    kind: ::saga_runtime::workflow::CheckpointKind::#kind,
                    awaits: #awaits,
                }
            }
        });
        quote!(&[#(#rows),*])
    }

    fn resume(&self) -> TokenStream {
        let state = &self.state;
        let ctx = &self.sig.ctx;
        let ctx_ty = self.sig.ctx_ty;
        let s = mixed("__state");
        let w = mixed("__wake");
        let start_pats: Vec<TokenStream> = self.start.iter().map(|f| self.field_pat(f)).collect();
        let start_body = self.stmts(&self.body.block.stmts);
        let arms = (0..self.body.checkpoints.len()).map(|cp| {
            let v = &self.variants[cp];
            let mut pats: Vec<TokenStream> =
                self.fields[cp].iter().map(|f| self.field_pat(f)).collect();
            match &self.body.checkpoints[cp].kind {
                CpKind::Join(calls) => {
                    for j in 0..calls.len() {
                        let f = join_field(j);
                        pats.push(quote!(mut #f));
                    }
                }
                CpKind::JoinAll { .. } => {
                    let f = mixed("__saga_results");
                    pats.push(quote!(mut #f));
                }
                CpKind::Single(_) => {}
            }
            let body = self.continuation(cp);
            quote! {
                #state::#v { #(#pats),* } => { #body }
            }
        });
        let finished = format!(
            "this is a bug in the engine: workflow `{}` resumed after it finished",
            self.type_id
        );
        let dispatch = quote! {
            match #s {
                #state::Start { #(#start_pats),* } => { #start_body }
                #(#arms)*
                #state::Finished => ::core::panic!(#finished),
            }
        };
        let body = if self.has_join_all() {
            let label = syn::Lifetime::new("'__saga_dispatch", Span::mixed_site());
            quote! {
                let mut #s = #s;
                let mut #w = #w;
                #label: loop {
                    #dispatch
                }
            }
        } else {
            dispatch
        };
        quote! {
            #[allow(
                unreachable_code,
                unused_labels,
                unused_mut,
                unused_assignments,
                unused_variables,
                clippy::all,
                clippy::pedantic
            )]
            fn resume(
                #s: Self::State,
                #ctx: #ctx_ty,
                #w: ::saga_runtime::workflow::Wake,
            ) -> ::saga_runtime::workflow::Transition<Self> {
                let _ = &#ctx;
                #body
            }
        }
    }

    // ---- segment code ------------------------------------------------------------

    fn stmts(&self, stmts: &[Stmt<'_>]) -> TokenStream {
        let mut out = TokenStream::new();
        for (i, s) in stmts.iter().enumerate() {
            if i + 1 == stmts.len()
                && matches!(s, Stmt::If { .. } | Stmt::Match { .. } | Stmt::Block { .. })
            {
                // A block's tail construct keeps giving its value.
                out.extend(self.construct_expr(s));
                break;
            }
            out.extend(self.stmt(s));
            if let Stmt::Await { .. } = s {
                // The segment ends here: what follows runs in the checkpoint's own arm
                // (and would name bindings this segment never made).
                break;
            }
        }
        out
    }

    fn block(&self, b: &Block<'_>) -> TokenStream {
        let inner = self.stmts(&b.stmts);
        quote!({ #inner })
    }

    /// An `if`, `match` or block construct as an expression (no `;`).
    fn construct_expr(&self, s: &Stmt<'_>) -> TokenStream {
        match s {
            Stmt::If { cond, then, els } => {
                let cond = self.cond(cond);
                let then = self.block(then);
                let els = els.as_ref().map(|b| {
                    let b = self.block(b);
                    quote!(else #b)
                });
                quote!(if #cond #then #els)
            }
            Stmt::Match { scrutinee, arms } => {
                let scrut = match scrutinee {
                    Scrutinee::Expr { expr, .. } => rewrite_expr(expr),
                    Scrutinee::Temp(t) => self.var(*t).to_token_stream(),
                };
                let arms = arms.iter().map(|a| {
                    let pat = rewrite_pat(&a.arm.pat);
                    let body = self.block(&a.body);
                    quote!(#pat => #body)
                });
                quote!(match #scrut { #(#arms)* })
            }
            Stmt::Block { label, block } => {
                let b = self.block(block);
                quote!(#label #b)
            }
            _ => unreachable!("this is a bug in saga-macros: not an if, match or block"),
        }
    }

    fn stmt(&self, s: &Stmt<'_>) -> TokenStream {
        match s {
            Stmt::Plain(p) => plain(p.node),
            Stmt::Await { cp, .. } => self.suspend(*cp),
            Stmt::If { .. } | Stmt::Match { .. } | Stmt::Block { .. } => {
                let e = self.construct_expr(s);
                quote!(#e;)
            }
            Stmt::Value(r) => match r {
                Returned::Expr { expr, .. } => rewrite_expr(expr),
                Returned::Temp(t) => self.var(*t).to_token_stream(),
            },
            Stmt::Bind { local, value, .. } => {
                let pat = &local.pat;
                let e = self.construct_expr(value);
                let diverge = diverge(local);
                quote!(let #pat = #e #diverge;)
            }
            Stmt::Loop {
                label, kind, body, ..
            } => {
                let b = self.block(body);
                match kind {
                    LoopKind::Loop => quote!(#label loop #b;),
                    LoopKind::While { expr, .. } => {
                        let c = rewrite_expr(expr);
                        quote!(#label while #c #b;)
                    }
                    LoopKind::WhileLet { pat, expr, .. } => {
                        let e = rewrite_expr(expr);
                        quote!(#label while let #pat = #e #b;)
                    }
                    LoopKind::For { cursor, .. } => {
                        let init = self.cursor_init(*cursor);
                        let c = self.var(*cursor);
                        let iteration = self.iteration(kind, body);
                        quote! {
                            let mut #c = #init;
                            #label loop { #iteration };
                        }
                    }
                }
            }
            Stmt::Return(r, span) => {
                let v = match r {
                    Returned::Expr { expr, .. } => rewrite_expr(expr),
                    Returned::Temp(t) => self.var(*t).to_token_stream(),
                };
                quote_spanned!(*span=> return ::saga_runtime::__private::finish::<Self>(#v);)
            }
        }
    }

    fn cursor_init(&self, cursor: VarId) -> TokenStream {
        let Origin::Cursor(expr) = &self.body.vars[cursor].origin else {
            unreachable!("this is a bug in saga-macros: a cursor without its expression")
        };
        let e = rewrite_expr(expr);
        let ty = self
            .fields
            .iter()
            .flatten()
            .find(|f| f.var == cursor)
            .map(|f| &f.ty);
        let init = match strip(expr) {
            syn::Expr::Range(r) if matches!(r.limits, syn::RangeLimits::HalfOpen(_)) => e,
            syn::Expr::Range(_) => quote!(::saga_runtime::__private::InclusiveCursor::new(#e)),
            _ => quote!(::saga_runtime::__private::Cursor::new(#e)),
        };
        match ty {
            Some(ty) => {
                let c = mixed("__saga_cursor");
                quote!({ let #c: #ty = #init; #c })
            }
            None => init,
        }
    }

    /// One full iteration of a loop, from its head.
    fn iteration(&self, kind: &LoopKind<'_>, body: &Block<'_>) -> TokenStream {
        let b = self.stmts(&body.stmts);
        match kind {
            LoopKind::Loop => b,
            LoopKind::While { expr, .. } => {
                let c = rewrite_expr(expr);
                quote!(if #c { #b } else { break; })
            }
            LoopKind::WhileLet { pat, expr, .. } => {
                let e = rewrite_expr(expr);
                quote!(if let #pat = #e { #b } else { break; })
            }
            LoopKind::For { pat, cursor, .. } => {
                let c = self.var(*cursor);
                let v = mixed("__saga_item");
                quote! {
                    let #pat = match ::core::iter::Iterator::next(&mut #c) {
                        ::core::option::Option::Some(#v) => #v,
                        ::core::option::Option::None => break,
                    };
                    #b
                }
            }
        }
    }

    fn cond(&self, c: &Cond<'_>) -> TokenStream {
        match c {
            Cond::Expr { expr, .. } => rewrite_expr(expr),
            Cond::Let { pat, expr, .. } => {
                let e = rewrite_expr(expr);
                quote!(let #pat = #e)
            }
            Cond::Temp(t) => self.var(*t).to_token_stream(),
        }
    }

    /// The variant of `cp` with its stored bindings moved in.
    fn state_value(&self, cp: usize, extra: TokenStream) -> TokenStream {
        let state = &self.state;
        let v = &self.variants[cp];
        let fields = self.fields[cp].iter().map(|f| self.var(f.var));
        quote!(#state::#v { #(#fields,)* #extra })
    }

    fn command(&self, call: &Call<'_>) -> TokenStream {
        let cmd = quote!(::saga_runtime::workflow::Command);
        match call {
            Call::Activity {
                handle,
                input,
                local,
            } => {
                let f = if *local {
                    quote!(local_activity)
                } else {
                    quote!(activity)
                };
                let span = input.span();
                let input = rewrite_expr(input);
                let v = mixed("__saga_input");
                // Typed first, so a wrong input reads "expected `In`, found `X`" at the
                // user's expression.
                quote_spanned! {span=> {
                    let #v: <#handle as ::saga_runtime::activity::Activity>::Input = #input;
                    #cmd::#f::<#handle>(&#v)
                }}
            }
            Call::Child { handle, input } => {
                let span = input.span();
                let input = rewrite_expr(input);
                let v = mixed("__saga_input");
                quote_spanned! {span=> {
                    let #v: <#handle as ::saga_runtime::workflow::Workflow>::Input = #input;
                    #cmd::child::<#handle>(::core::option::Option::None, &#v)
                }}
            }
            Call::Sleep { duration } => {
                let d = rewrite_expr(duration);
                quote!(#cmd::sleep(#d))
            }
            Call::Signal { name, timeout, .. } => {
                let n = rewrite_expr(name);
                let t = match timeout {
                    Some(t) => {
                        let t = rewrite_expr(t);
                        quote!(::core::option::Option::Some(#t))
                    }
                    None => quote!(::core::option::Option::None),
                };
                quote!(#cmd::signal(#n, #t))
            }
        }
    }

    /// Segment code at a checkpoint: issue its commands and suspend.
    fn suspend(&self, cp: usize) -> TokenStream {
        let commands = mixed("__commands");
        let transition = quote!(::saga_runtime::workflow::Transition);
        match &self.body.checkpoints[cp].kind {
            CpKind::Single(call) => {
                let c = self.command(call);
                let state = self.state_value(cp, quote!());
                quote! {
                    let #commands = ::std::vec![#c];
                    return #transition::Suspend { state: #state, commands: #commands };
                }
            }
            CpKind::Join(calls) => {
                let cs = calls.iter().map(|c| self.command(c));
                let partial = (0..calls.len()).map(|j| {
                    let f = join_field(j);
                    quote!(#f: ::core::option::Option::None,)
                });
                let state = self.state_value(cp, quote!(#(#partial)*));
                quote! {
                    let #commands = ::std::vec![#(#cs),*];
                    return #transition::Suspend { state: #state, commands: #commands };
                }
            }
            CpKind::JoinAll {
                iter,
                pat,
                prelude,
                call,
            } => {
                let c = self.command(call);
                // Each item: the closure's plain statements, then the command.
                let item = if prelude.is_empty() {
                    quote!(|#pat| #c)
                } else {
                    quote!(|#pat| { #(#prelude)* #c })
                };
                let iter = rewrite_expr(iter);
                let results = mixed("__saga_results");
                let s = mixed("__state");
                let w = mixed("__wake");
                let label = syn::Lifetime::new("'__saga_dispatch", Span::mixed_site());
                let empty = self.state_value(cp, quote!(#results: ::std::vec::Vec::new(),));
                let waiting = self.state_value(
                    cp,
                    quote!(#results: ::core::iter::Iterator::collect(
                        ::core::iter::Iterator::map(0..#commands.len(), |_| ::core::option::Option::None)
                    ),),
                );
                quote! {
                    let #commands: ::std::vec::Vec<::saga_runtime::workflow::Command> =
                        ::core::iter::Iterator::collect(::core::iter::Iterator::map(
                            ::core::iter::IntoIterator::into_iter(#iter),
                            #item,
                        ));
                    if #commands.is_empty() {
                        // Nothing to wait for: continue at once with no results.
                        #s = #empty;
                        #w = ::saga_runtime::workflow::Wake::Start;
                        continue #label;
                    }
                    return #transition::Suspend { state: #waiting, commands: #commands };
                }
            }
        }
    }

    // ---- resume arms -------------------------------------------------------------

    /// Decoding a wake for one call (without `?`).
    fn decode(&self, call: &Call<'_>, wake: &syn::Ident) -> TokenStream {
        match call {
            Call::Activity { handle, .. } => quote!(#wake.activity::<#handle>()),
            Call::Child { handle, .. } => quote!(#wake.child::<#handle>()),
            Call::Sleep { .. } => quote!(::saga_runtime::__private::timer(#wake)),
            Call::Signal { ty: Some(ty), .. } => quote!(#wake.signal::<#ty>()),
            Call::Signal { ty: None, .. } => quote!(#wake.signal()),
        }
    }

    /// The woken value (`__value`) of a checkpoint, then its binding.
    fn wake_value(&self, cp: usize) -> TokenStream {
        let checkpoint = &self.body.checkpoints[cp];
        let w = mixed("__wake");
        let value = mixed("__value");
        let transition = quote!(::saga_runtime::workflow::Transition);
        match &checkpoint.kind {
            CpKind::Single(call) => {
                let d = self.decode(call, &w);
                if checkpoint.tried {
                    let (ok, err) = (mixed("__ok"), mixed("__err"));
                    let span = checkpoint.expr.span();
                    let fail =
                        quote_spanned!(span=> #transition::Fail(::core::convert::From::from(#err)));
                    quote! {
                        let #value = match #d {
                            ::core::result::Result::Ok(#ok) => #ok,
                            ::core::result::Result::Err(#err) => return #fail,
                        };
                    }
                } else {
                    quote!(let #value = #d;)
                }
            }
            CpKind::Join(calls) => {
                let slot = mixed("__slot");
                let arms = calls.iter().enumerate().map(|(j, c)| {
                    let f = join_field(j);
                    let d = self.decode(c, &w);
                    let j = j as u32;
                    quote!(#j => #f = ::core::option::Option::Some(#d),)
                });
                let fields: Vec<syn::Ident> = (0..calls.len()).map(join_field).collect();
                let rs: Vec<syn::Ident> = (0..calls.len())
                    .map(|j| mixed(&format!("__saga_r{j}")))
                    .collect();
                let again = self.state_value(cp, quote!(#(#fields,)*));
                let bug = format!(
                    "this is a bug in the engine: a wake for slot {{}} of a {}-way join",
                    calls.len()
                );
                quote! {
                    match #w.slot() {
                        #(#arms)*
                        #slot => ::core::panic!(#bug, #slot),
                    }
                    let (#(#rs,)*) = match (#(#fields,)*) {
                        (#(::core::option::Option::Some(#rs),)*) => (#(#rs,)*),
                        (#(#fields,)*) => {
                            return #transition::Suspend { state: #again, commands: ::std::vec::Vec::new() };
                        }
                    };
                    let #value = (#(#rs,)*);
                }
            }
            CpKind::JoinAll { call, .. } => {
                let results = mixed("__saga_results");
                let slot = mixed("__slot");
                let d = self.decode(call, &w);
                let again = self.state_value(cp, quote!(#results,));
                quote! {
                    if !#results.is_empty() {
                        // Empty: entered at once for an empty join, no wake to record.
                        let #slot = #w.slot() as usize;
                        match #results.get_mut(#slot) {
                            ::core::option::Option::Some(r) => *r = ::core::option::Option::Some(#d),
                            ::core::option::Option::None => ::core::panic!(
                                "this is a bug in the engine: a wake for slot {} of a {}-way join_all",
                                #slot, #results.len()
                            ),
                        }
                    }
                    if #results.iter().any(::core::option::Option::is_none) {
                        return #transition::Suspend { state: #again, commands: ::std::vec::Vec::new() };
                    }
                    let #value: ::std::vec::Vec<_> =
                        ::core::iter::Iterator::collect(::core::iter::Iterator::flatten(
                            ::core::iter::IntoIterator::into_iter(#results),
                        ));
                }
            }
        }
    }

    fn bind(&self, bind: &Bind<'_>) -> TokenStream {
        let value = mixed("__value");
        match bind {
            Bind::Discard => quote!(let _ = #value;),
            Bind::Let { local, .. } => {
                let pat = &local.pat;
                let diverge = local
                    .init
                    .as_ref()
                    .and_then(|i| i.diverge.as_ref())
                    .map(|(_, e)| {
                        let e = rewrite_expr(e);
                        quote!(else #e)
                    });
                quote!(let #pat = #value #diverge;)
            }
            Bind::Assign { place, op, .. } => {
                let place = rewrite_expr(place);
                match op {
                    Some(op) => quote!(#place #op #value;),
                    None => quote!(#place = #value;),
                }
            }
            Bind::Temp(t) => {
                let t = self.var(*t);
                quote!(let #t = #value;)
            }
        }
    }

    /// The code of `cp`'s arm: wake, bind, then everything after it.
    ///
    /// The stored bindings are restored where they were declared: a binding declared
    /// inside a loop body is handed to the first (resumed) iteration through a
    /// one-shot `Option`, so that the borrow checker sees it moved at most once, as it
    /// was in the user's loop; the woken value likewise.
    fn continuation(&self, cp: usize) -> TokenStream {
        let path = find(&self.body.block, cp)
            .expect("this is a bug in saga-macros: a checkpoint outside the body");
        let k = path.len() - 1;
        let (block, idx) = path[k];
        let Stmt::Await { bind, .. } = &block.stmts[idx] else {
            unreachable!("this is a bug in saga-macros: the path does not end at the checkpoint")
        };
        // Where each stored binding is restored: the innermost loop level at or above
        // its declaration (0: the top of the arm).
        let is_loop = |j: usize| {
            j > 0
                && matches!(
                    inner(&path[j - 1].0.stmts[path[j - 1].1]),
                    Stmt::Loop { .. }
                )
        };
        let point = |level: usize| (1..=level).rev().find(|j| is_loop(*j)).unwrap_or(0);
        let mut keep: Vec<Vec<TokenStream>> = vec![Vec::new(); k + 1];
        let mut keep_vals: Vec<Vec<TokenStream>> = vec![Vec::new(); k + 1];
        for f in &self.fields[cp] {
            let level = declared_level(&path, f.var).unwrap_or(0);
            let p = point(level);
            if p > 0 {
                let ident = self.var(f.var);
                keep[p].push(self.field_pat(f));
                keep_vals[p].push(quote!(#ident));
            }
        }
        let value = mixed("__value");
        let value_point = point(k);
        if value_point > 0 {
            keep[value_point].push(quote!(#value));
            keep_vals[value_point].push(quote!(#value));
        }
        let holder = |j: usize| mixed(&format!("__saga_keep{j}"));
        let mut top = self.wake_value(cp);
        for j in 1..=k {
            if !keep[j].is_empty() {
                let h = holder(j);
                let vals = &keep_vals[j];
                top.extend(quote!(let mut #h = ::core::option::Option::Some((#(#vals,)*));));
            }
        }
        let restore = |j: usize| -> TokenStream {
            if keep[j].is_empty() {
                return quote!();
            }
            let h = holder(j);
            let pats = &keep[j];
            quote! {
                let (#(#pats,)*) = match #h.take() {
                    ::core::option::Option::Some(__saga_kept) => __saga_kept,
                    ::core::option::Option::None => ::core::unreachable!(),
                };
            }
        };
        let reach = self.cfg.reachable_in_segment(self.cfg.resume[cp]);
        let mut code = self.bind(bind);
        code.extend(self.stmts(&block.stmts[idx + 1..]));
        for j in (1..=k).rev() {
            let (block, idx) = path[j - 1];
            let wrapped = match &block.stmts[idx] {
                Stmt::Bind { local, value, .. } => {
                    let pat = &local.pat;
                    let diverge = diverge(local);
                    match &**value {
                        Stmt::Block { label, .. } => quote!(let #pat = #label { #code } #diverge;),
                        _ => quote!(let #pat = { #code } #diverge;),
                    }
                }
                Stmt::If { .. } | Stmt::Match { .. } if idx + 1 == block.stmts.len() => {
                    quote!({ #code })
                }
                Stmt::Block { label, .. } if idx + 1 == block.stmts.len() => {
                    quote!(#label { #code })
                }
                Stmt::If { .. } | Stmt::Match { .. } => quote!({ #code };),
                Stmt::Block { label, .. } => quote!(#label { #code };),
                Stmt::Loop {
                    label, kind, body, ..
                } => {
                    let n = self.flags.get();
                    self.flags.set(n + 1);
                    let flag = mixed(&format!("__saga_resumed{n}"));
                    let iteration = self.iteration(kind, body);
                    let restore = restore(j);
                    quote! {
                        let mut #flag = true;
                        #label loop {
                            if #flag {
                                #flag = false;
                                #restore
                                #code
                            } else {
                                #iteration
                            }
                        };
                    }
                }
                _ => unreachable!("this is a bug in saga-macros: a path through a plain statement"),
            };
            code = wrapped;
            // Only what this segment can reach: code after a construct it always
            // leaves (by `return`, `break`, a suspension..) would name bindings the
            // arm never restored.
            if self.cfg.after_reachable(&block.stmts[idx], &reach) {
                code.extend(self.stmts(&block.stmts[idx + 1..]));
            } else {
                // rustc cannot see that the resumed iteration always suspends; the
                // CFG can.
                code.extend(quote!(::core::unreachable!(
                    "this is a bug in saga-macros: control reached code its analysis found unreachable"
                )));
            }
        }
        top.extend(code);
        top
    }
}

/// `else { .. }` of a `let .. else`.
fn diverge(local: &syn::Local) -> Option<TokenStream> {
    local
        .init
        .as_ref()
        .and_then(|i| i.diverge.as_ref())
        .map(|(_, e)| {
            let e = rewrite_expr(e);
            quote!(else #e)
        })
}

/// `let x = if ..` binds through the construct inside.
fn inner<'s, 'a>(s: &'s Stmt<'a>) -> &'s Stmt<'a> {
    match s {
        Stmt::Bind { value, .. } => value,
        other => other,
    }
}

/// The level (index into `path`) of the block that declares `var`.
fn declared_level(path: &[(&Block<'_>, usize)], var: VarId) -> Option<usize> {
    for (j, (block, _)) in path.iter().enumerate() {
        let mut here: Vec<VarId> = Vec::new();
        for s in &block.stmts {
            match s {
                Stmt::Plain(p) => here.extend(&p.defs),
                Stmt::Await {
                    bind: Bind::Let { vars, .. },
                    ..
                } => here.extend(vars),
                Stmt::Await {
                    bind: Bind::Temp(t),
                    ..
                } => here.push(*t),
                Stmt::Loop {
                    kind: LoopKind::For { cursor, .. },
                    ..
                } => here.push(*cursor),
                Stmt::Bind { vars, .. } => here.extend(vars),
                _ => {}
            }
        }
        if j > 0 {
            let (outer, idx) = path[j - 1];
            match inner(&outer.stmts[idx]) {
                Stmt::If {
                    cond: Cond::Let { vars, .. },
                    ..
                } => here.extend(vars),
                Stmt::Match { arms, .. } => {
                    for a in arms {
                        if std::ptr::eq(&a.body, *block) {
                            here.extend(&a.vars);
                        }
                    }
                }
                Stmt::Loop {
                    kind: LoopKind::For { vars, .. } | LoopKind::WhileLet { vars, .. },
                    ..
                } => here.extend(vars),
                _ => {}
            }
        }
        if here.contains(&var) {
            return Some(j);
        }
    }
    None
}

/// The blocks and statement indexes from the body down to checkpoint `cp`.
pub(crate) fn find<'b, 'a>(block: &'b Block<'a>, cp: CpId) -> Option<Vec<(&'b Block<'a>, usize)>> {
    for (i, s) in block.stmts.iter().enumerate() {
        let s = match s {
            Stmt::Bind { value, .. } => &**value,
            other => other,
        };
        let children: Vec<&Block<'a>> = match s {
            Stmt::Await { cp: c, .. } if *c == cp => return Some(vec![(block, i)]),
            Stmt::If { then, els, .. } => std::iter::once(then).chain(els.as_ref()).collect(),
            Stmt::Match { arms, .. } => arms.iter().map(|a| &a.body).collect(),
            Stmt::Loop { body, .. } => vec![body],
            Stmt::Block { block, .. } => vec![block],
            _ => continue,
        };
        for child in children {
            if let Some(mut path) = find(child, cp) {
                path.insert(0, (block, i));
                return Some(path);
            }
        }
    }
    None
}

fn strip(e: &syn::Expr) -> &syn::Expr {
    match e {
        syn::Expr::Paren(p) => strip(&p.expr),
        syn::Expr::Group(g) => strip(&g.expr),
        other => other,
    }
}

/// A plain statement, with `?` / `return` rewritten and the escape hatch removed.
fn plain(node: PlainNode<'_>) -> TokenStream {
    match node {
        PlainNode::Stmt(s) => {
            let mut s = s.clone();
            super::determinism::StripEscapeHatch.visit_stmt_mut(&mut s);
            Rewrite.visit_stmt_mut(&mut s);
            match &s {
                syn::Stmt::Expr(e, None) => quote!(#e;),
                other => other.to_token_stream(),
            }
        }
        PlainNode::Expr(e) => {
            let e = rewrite_expr(e);
            quote!(#e;)
        }
    }
}

fn rewrite_expr(e: &syn::Expr) -> TokenStream {
    let mut e = e.clone();
    Rewrite.visit_expr_mut(&mut e);
    e.to_token_stream()
}

fn rewrite_pat(p: &syn::Pat) -> TokenStream {
    let mut p = p.clone();
    Rewrite.visit_pat_mut(&mut p);
    p.to_token_stream()
}

/// `e?` → `match e { Ok(v) => v, Err(e) => return Transition::Fail(From::from(e)) }`;
/// `return e` → `return finish::<Self>(e)`. Closures, async blocks and nested items
/// keep their own `?` and `return`.
struct Rewrite;

impl VisitMut for Rewrite {
    fn visit_expr_mut(&mut self, e: &mut syn::Expr) {
        match e {
            syn::Expr::Closure(_) | syn::Expr::Async(_) => {}
            syn::Expr::Try(t) => {
                self.visit_expr_mut(&mut t.expr);
                let inner = &t.expr;
                let (ok, err) = (mixed("__ok"), mixed("__err"));
                let span = t.question_token.span;
                let fail = quote_spanned!(span=> ::saga_runtime::workflow::Transition::Fail(::core::convert::From::from(#err)));
                *e = syn::parse_quote! {
                    match #inner {
                        ::core::result::Result::Ok(#ok) => #ok,
                        ::core::result::Result::Err(#err) => return #fail,
                    }
                };
            }
            syn::Expr::Return(r) => {
                if let Some(v) = &mut r.expr {
                    self.visit_expr_mut(v);
                }
                let span = r.return_token.span;
                let v = match &r.expr {
                    Some(v) => v.to_token_stream(),
                    None => quote!(()),
                };
                *e = syn::parse_quote_spanned! {span=>
                    return ::saga_runtime::__private::finish::<Self>(#v)
                };
            }
            _ => syn::visit_mut::visit_expr_mut(self, e),
        }
    }
    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
    fn visit_macro_mut(&mut self, m: &mut syn::Macro) {
        // `format!("{}", x?)`: macro arguments are tokens to syn; when they read as
        // comma-separated expressions, rewrite them like any other code.
        let has = |t: &TokenStream| {
            t.clone().into_iter().any(|tt| match tt {
                proc_macro2::TokenTree::Punct(p) => p.as_char() == '?',
                proc_macro2::TokenTree::Ident(i) => i == "return",
                proc_macro2::TokenTree::Group(g) => {
                    let inner = g.stream().to_string();
                    inner.contains('?') || inner.contains("return")
                }
                proc_macro2::TokenTree::Literal(_) => false,
            })
        };
        if !has(&m.tokens) {
            return;
        }
        let parser = syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated;
        if let Ok(mut args) = syn::parse::Parser::parse2(parser, m.tokens.clone()) {
            for a in args.iter_mut() {
                self.visit_expr_mut(a);
            }
            m.tokens = args.to_token_stream();
        }
    }
}
