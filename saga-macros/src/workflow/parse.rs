//! Phase 1: the signature and the body into the IR ([`super::ir`]).
//!
//! Input: `async fn f(ctx: &mut WorkflowContext, input: In) -> Result<Out, E> { .. }`.
//! Output: a [`Signature`] and a [`Body`] whose statements are either plain (no
//! checkpoint inside: kept as syn nodes) or the control flow around checkpoints, with
//! every binding resolved to a [`VarId`] through the block scopes.
//!
//! `.await` is accepted only where nothing else in the statement is evaluated before
//! it (DESIGN.md 4.1); every other `.await` is reported with the reason and the fix.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::visit::Visit;

use super::ir::*;
use crate::activity::{last_segment_is, result_args};
use crate::ctxt::Ctxt;
use crate::names;

/// `#[workflow(..)]` arguments.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) name: Option<syn::LitStr>,
    pub(crate) timeout: Option<std::time::Duration>,
    pub(crate) task_queue: Option<syn::LitStr>,
}

/// What the signature says.
pub(crate) struct Signature<'a> {
    pub(crate) item: &'a syn::ItemFn,
    pub(crate) ctx: syn::Ident,
    /// `&mut WorkflowContext` as written (so the user's import of it is used).
    pub(crate) ctx_ty: &'a syn::Type,
    /// The input parameter (`None`: the workflow's input is `()`).
    pub(crate) input: Option<(&'a syn::PatIdent, &'a syn::Type)>,
    pub(crate) output: syn::Type,
    pub(crate) error: syn::Type,
}

pub(crate) fn args(cx: &Ctxt, args: TokenStream) -> Args {
    let mut out = Args::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            out.name = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("timeout") {
            let lit: syn::LitStr = meta.value()?.parse()?;
            match names::parse_duration(&lit.value()) {
                Ok(d) => out.timeout = Some(d),
                Err(why) => cx.error_spanned_by(
                    &lit,
                    format!("invalid duration `{}`: {why}; e.g. `\"1h\"`", lit.value()),
                ),
            }
        } else if meta.path.is_ident("task_queue") {
            out.task_queue = names::task_queue_arg(cx, &meta, "orders")?;
        } else {
            return Err(meta.error(format!(
                "unknown `#[workflow]` argument `{}`; expected `name`, `timeout` or `task_queue`",
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

/// Checks the signature shape: `async`, the context first, at most one input,
/// `Result<Out, E>`.
pub(crate) fn signature<'a>(cx: &Ctxt, item: &'a syn::ItemFn) -> Option<Signature<'a>> {
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        cx.error_spanned_by(
            sig.fn_token,
            "a workflow must be an `async fn`: `#[workflow] async fn name(ctx: &mut WorkflowContext, input: In)`",
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &sig.generics,
            "a workflow cannot be generic: its state enum must be one concrete type",
        );
    }
    let mut params = sig.inputs.iter();
    let ctx = match params.next() {
        Some(syn::FnArg::Typed(pt)) if is_ctx_type(&pt.ty) => match &*pt.pat {
            syn::Pat::Ident(pi) if pi.subpat.is_none() && pi.by_ref.is_none() => {
                Some((pi.ident.clone(), &*pt.ty))
            }
            other => {
                cx.error_spanned_by(
                    other,
                    "name the workflow context with an identifier: `ctx: &mut WorkflowContext`",
                );
                None
            }
        },
        _ => {
            cx.error_spanned_by(
                &sig.inputs,
                "a workflow takes the context as its first parameter: `ctx: &mut WorkflowContext`",
            );
            None
        }
    };
    let mut input = None;
    for (i, arg) in params.enumerate() {
        match arg {
            syn::FnArg::Typed(pt) if i == 0 => match &*pt.pat {
                syn::Pat::Ident(pi) if pi.subpat.is_none() && pi.by_ref.is_none() => {
                    input = Some((pi, &*pt.ty));
                }
                other => cx.error_spanned_by(
                    other,
                    "the workflow input must be bound to a name: `input: In` (destructure it in the body)",
                ),
            },
            other => cx.error_spanned_by(
                other,
                "a workflow takes one input after the context; group the values in a struct or a tuple",
            ),
        }
    }
    let (output, error) = match &sig.output {
        syn::ReturnType::Type(_, ty) => match result_args(ty) {
            Some((ok, Some(err))) => (ok, err),
            _ => {
                cx.error_spanned_by(
                    ty,
                    "a workflow returns `Result<Output, Error>` (both types written out)",
                );
                return None;
            }
        },
        syn::ReturnType::Default => {
            cx.error_spanned_by(
                &sig.ident,
                "a workflow returns `Result<Output, Error>`: add `-> Result<Output, SagaError>`",
            );
            return None;
        }
    };
    let (ctx, ctx_ty) = ctx?;
    Some(Signature {
        item,
        ctx,
        ctx_ty,
        input,
        output,
        error,
    })
}

/// `&mut WorkflowContext` (any path to it).
fn is_ctx_type(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Reference(r) => {
            r.mutability.is_some() && last_segment_is(&r.elem, "WorkflowContext")
        }
        _ => false,
    }
}

/// Parses the body into the IR.
pub(crate) fn body<'a>(cx: &Ctxt, sig: &Signature<'a>) -> Body<'a> {
    let mut p = Parser {
        cx,
        ctx: sig.ctx.to_string(),
        vars: Vec::new(),
        checkpoints: Vec::new(),
        scopes: vec![Vec::new()],
        temps: 0,
        futures: None,
        reported_futures: Vec::new(),
    };
    let param = sig
        .input
        .map(|(pi, ty)| p.declare(&pi.ident, pi.mutability.is_some(), Origin::Param(ty)));
    let block = p.block(&sig.item.block, Tail::Return);
    Body {
        block,
        vars: p.vars,
        checkpoints: p.checkpoints,
        param,
    }
}

/// What a block's tail expression is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tail {
    /// Discarded (statement position).
    Stmt,
    /// The workflow's result.
    Return,
    /// The value of an enclosing `let x = if/match/{..}`.
    Value,
}

/// Why an `.await` is where it is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AwaitPlace {
    Nested,
    Closure,
    AsyncBlock,
    Macro,
    WhileCond,
    Guard,
    LazyOperand,
}

impl AwaitPlace {
    fn message(self) -> &'static str {
        match self {
            AwaitPlace::Nested => "`.await` must stand alone in a workflow: as a statement, a whole `let` initializer (optionally followed by `?`), an assignment's right side, a `match`/`if` scrutinee, a `return` value or the tail; bind it first: `let v = ctx.activity(f, input).await?;`",
            AwaitPlace::Closure => "`.await` inside a closure is not supported in a workflow; await at the statement level, or move the work into an activity",
            AwaitPlace::AsyncBlock => "`.await` inside an `async` block is not supported in a workflow; run checkpoints in parallel with `ctx.join((..))` or `ctx.join_all(..)`",
            AwaitPlace::Macro => "`.await` inside a macro call is not supported in a workflow; bind the value first: `let v = ctx.activity(f, input).await?;`",
            AwaitPlace::WhileCond => "`.await` in a `while` condition is not supported in a workflow; write `loop { let go = ...await?; if !go { break; } .. }`",
            AwaitPlace::Guard => "`.await` in a match guard is not supported in a workflow; await before the `match`",
            AwaitPlace::LazyOperand => "`.await` in an operand of `&&` or `||` is not supported in a workflow (it may not run); await first: `let v = ...await?;`",
        }
    }
}

/// Finds every `.await` in an expression, with the innermost reason it is not allowed.
struct AwaitFinder {
    place: AwaitPlace,
    found: Vec<(Span, AwaitPlace)>,
}

impl AwaitFinder {
    fn run(place: AwaitPlace, f: impl FnOnce(&mut AwaitFinder)) -> Vec<(Span, AwaitPlace)> {
        let mut finder = AwaitFinder {
            place,
            found: Vec::new(),
        };
        f(&mut finder);
        finder.found
    }

    fn with(&mut self, place: AwaitPlace, f: impl FnOnce(&mut Self)) {
        let saved = self.place;
        // A closure or async block explains the problem better than where it sits.
        if !matches!(saved, AwaitPlace::Closure | AwaitPlace::AsyncBlock) {
            self.place = place;
        }
        f(self);
        self.place = saved;
    }
}

impl<'ast> Visit<'ast> for AwaitFinder {
    fn visit_expr_await(&mut self, e: &'ast syn::ExprAwait) {
        self.found.push((e.await_token.span(), self.place));
        syn::visit::visit_expr_await(self, e);
    }
    fn visit_expr_closure(&mut self, e: &'ast syn::ExprClosure) {
        self.with(AwaitPlace::Closure, |v| {
            syn::visit::visit_expr_closure(v, e)
        });
    }
    fn visit_expr_async(&mut self, e: &'ast syn::ExprAsync) {
        self.with(AwaitPlace::AsyncBlock, |v| {
            syn::visit::visit_expr_async(v, e)
        });
    }
    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        self.with(AwaitPlace::WhileCond, |v| v.visit_expr(&e.cond));
        self.visit_block(&e.body);
    }
    fn visit_pat_guard(&mut self, g: &'ast syn::PatGuard) {
        self.visit_pat(&g.pat);
        self.with(AwaitPlace::Guard, |v| v.visit_expr(&g.guard));
    }
    fn visit_expr_binary(&mut self, e: &'ast syn::ExprBinary) {
        if matches!(e.op, syn::BinOp::And(_) | syn::BinOp::Or(_)) {
            self.visit_expr(&e.left);
            self.with(AwaitPlace::LazyOperand, |v| v.visit_expr(&e.right));
        } else {
            syn::visit::visit_expr_binary(self, e);
        }
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        if let Some(span) = await_token_in(m.tokens.clone()) {
            let place = match self.place {
                AwaitPlace::Closure | AwaitPlace::AsyncBlock => self.place,
                _ => AwaitPlace::Macro,
            };
            self.found.push((span, place));
        }
    }
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

/// The span of an `await` keyword anywhere in `tokens`.
fn await_token_in(tokens: TokenStream) -> Option<Span> {
    tokens.into_iter().find_map(|tt| match tt {
        TokenTree::Ident(i) if i == "await" => Some(i.span()),
        TokenTree::Group(g) => await_token_in(g.stream()),
        _ => None,
    })
}

/// True if the tokens of `node` contain `.await`.
fn has_await<T: ToTokens>(node: &T) -> bool {
    await_token_in(node.to_token_stream()).is_some()
}

/// The names a plain statement reads, the jumps out of it, and misused context calls.
#[derive(Default)]
struct Scan {
    names: Vec<String>,
    jumps: Vec<Jump>,
    /// `(span, method)` of `ctx.activity(..)` etc. not awaited where they stand.
    unawaited: Vec<(Span, String)>,
    ctx: String,
    loop_depth: usize,
    closure_depth: usize,
    returns: bool,
    fails: bool,
    inner_labels: Vec<String>,
}

const CHECKPOINT_METHODS: &[&str] = &[
    "activity",
    "local_activity",
    "child",
    "sleep",
    "signal",
    "join",
    "join_all",
];

impl Scan {
    fn new(ctx: &str) -> Self {
        Scan {
            ctx: ctx.to_owned(),
            ..Scan::default()
        }
    }

    fn jump(&mut self, is_break: bool, label: Option<&syn::Lifetime>) {
        if self.closure_depth > 0 {
            return;
        }
        match label {
            Some(l) if self.inner_labels.contains(&l.ident.to_string()) => {}
            Some(l) => self.jumps.push(Jump {
                is_break,
                label: Some(l.ident.to_string()),
            }),
            None if self.loop_depth > 0 => {}
            None => self.jumps.push(Jump {
                is_break,
                label: None,
            }),
        }
    }

    fn in_loop(&mut self, label: Option<&syn::Label>, f: impl FnOnce(&mut Self)) {
        if let Some(l) = label {
            self.inner_labels.push(l.name.ident.to_string());
        }
        self.loop_depth += 1;
        f(self);
        self.loop_depth -= 1;
        if label.is_some() {
            self.inner_labels.pop();
        }
    }

    fn tokens(&mut self, tokens: TokenStream) {
        for tt in tokens {
            match tt {
                TokenTree::Ident(i) => self.names.push(i.to_string()),
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Literal(l) => {
                    // Inline format arguments: `format!("{order_id}")`.
                    let text = l.to_string();
                    if text.starts_with('"') || text.starts_with('r') {
                        self.format_args(&text);
                    }
                }
                TokenTree::Punct(_) => {}
            }
        }
    }

    fn format_args(&mut self, text: &str) {
        let mut rest = text;
        while let Some(i) = rest.find('{') {
            rest = &rest[i + 1..];
            if rest.starts_with('{') {
                rest = &rest[1..];
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                self.names.push(name);
            }
        }
    }
}

impl<'ast> Visit<'ast> for Scan {
    fn visit_expr_path(&mut self, e: &'ast syn::ExprPath) {
        if e.qself.is_none() {
            if let Some(id) = e.path.get_ident() {
                self.names.push(id.to_string());
            }
        }
        syn::visit::visit_expr_path(self, e);
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.tokens(m.tokens.clone());
    }
    fn visit_expr_method_call(&mut self, e: &'ast syn::ExprMethodCall) {
        if let syn::Expr::Path(p) = &*e.receiver {
            let method = e.method.to_string();
            if p.path.is_ident(&self.ctx) && CHECKPOINT_METHODS.contains(&method.as_str()) {
                self.unawaited.push((e.method.span(), method));
            }
        }
        syn::visit::visit_expr_method_call(self, e);
    }
    fn visit_expr_await(&mut self, e: &'ast syn::ExprAwait) {
        // An awaited checkpoint in the wrong place is reported as such, not as
        // "not awaited".
        let before = self.unawaited.len();
        syn::visit::visit_expr_await(self, e);
        self.unawaited.truncate(before);
    }
    fn visit_expr_closure(&mut self, e: &'ast syn::ExprClosure) {
        self.closure_depth += 1;
        syn::visit::visit_expr_closure(self, e);
        self.closure_depth -= 1;
    }
    fn visit_expr_async(&mut self, e: &'ast syn::ExprAsync) {
        self.closure_depth += 1;
        syn::visit::visit_expr_async(self, e);
        self.closure_depth -= 1;
    }
    fn visit_expr_break(&mut self, e: &'ast syn::ExprBreak) {
        self.jump(true, e.label.as_ref());
        syn::visit::visit_expr_break(self, e);
    }
    fn visit_expr_return(&mut self, e: &'ast syn::ExprReturn) {
        self.returns |= self.closure_depth == 0;
        syn::visit::visit_expr_return(self, e);
    }
    fn visit_expr_try(&mut self, e: &'ast syn::ExprTry) {
        self.fails |= self.closure_depth == 0;
        syn::visit::visit_expr_try(self, e);
    }
    fn visit_expr_continue(&mut self, e: &'ast syn::ExprContinue) {
        self.jump(false, e.label.as_ref());
    }
    fn visit_expr_loop(&mut self, e: &'ast syn::ExprLoop) {
        self.in_loop(e.label.as_ref(), |s| s.visit_block(&e.body));
    }
    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        self.visit_expr(&e.cond);
        self.in_loop(e.label.as_ref(), |s| s.visit_block(&e.body));
    }
    fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
        self.visit_expr(&e.expr);
        self.in_loop(e.label.as_ref(), |s| s.visit_block(&e.body));
    }
    fn visit_expr_block(&mut self, e: &'ast syn::ExprBlock) {
        if let Some(l) = &e.label {
            self.inner_labels.push(l.name.ident.to_string());
            self.visit_block(&e.block);
            self.inner_labels.pop();
        } else {
            self.visit_block(&e.block);
        }
    }
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

/// One binding of a pattern.
pub(crate) struct Binding<'a> {
    pub(crate) ident: &'a syn::Ident,
    pub(crate) mutable: bool,
    pub(crate) by_ref: bool,
    pub(crate) ty: Option<&'a syn::Type>,
}

/// The bindings of `pat`, with the types that annotations give them.
pub(crate) fn bindings<'a>(pat: &'a syn::Pat) -> Vec<Binding<'a>> {
    let mut out = Vec::new();
    collect_bindings(pat, None, &mut out);
    out
}

fn collect_bindings<'a>(pat: &'a syn::Pat, ty: Option<&'a syn::Type>, out: &mut Vec<Binding<'a>>) {
    match pat {
        syn::Pat::Ident(pi) => {
            // `None`, `Red`: by convention a path to a constant or variant, not a binding.
            let looks_like_path = pi.by_ref.is_none()
                && pi.mutability.is_none()
                && pi.subpat.is_none()
                && names::unraw(&pi.ident).starts_with(|c: char| c.is_uppercase());
            if !looks_like_path {
                out.push(Binding {
                    ident: &pi.ident,
                    mutable: pi.mutability.is_some(),
                    by_ref: pi.by_ref.is_some(),
                    ty,
                });
            }
            if let Some((_, sub)) = &pi.subpat {
                collect_bindings(sub, None, out);
            }
        }
        syn::Pat::Type(pt) => collect_bindings(&pt.pat, Some(&pt.ty), out),
        syn::Pat::Tuple(t) => {
            let tys: Option<Vec<&syn::Type>> = match ty {
                Some(syn::Type::Tuple(tt)) if tt.elems.len() == t.elems.len() => {
                    Some(tt.elems.iter().collect())
                }
                _ => None,
            };
            for (i, p) in t.elems.iter().enumerate() {
                collect_bindings(p, tys.as_ref().map(|t| t[i]), out);
            }
        }
        syn::Pat::Paren(p) => collect_bindings(&p.pat, ty, out),
        syn::Pat::Reference(r) => collect_bindings(&r.pat, None, out),
        syn::Pat::TupleStruct(t) => t.elems.iter().for_each(|p| collect_bindings(p, None, out)),
        syn::Pat::Struct(s) => s
            .fields
            .iter()
            .for_each(|f| collect_bindings(&f.pat, None, out)),
        syn::Pat::Slice(s) => s.elems.iter().for_each(|p| collect_bindings(p, None, out)),
        syn::Pat::Or(o) => {
            if let Some(first) = o.cases.first() {
                collect_bindings(first, ty, out);
            }
        }
        syn::Pat::Guard(g) => collect_bindings(&g.pat, ty, out),
        _ => {}
    }
}

struct Parser<'a, 'c> {
    cx: &'c Ctxt,
    ctx: String,
    vars: Vec<Var<'a>>,
    checkpoints: Vec<Checkpoint<'a>>,
    scopes: Vec<Vec<(String, VarId)>>,
    temps: usize,
    /// Checkpoint futures bound by the previous statement, for its `ctx.join_all`.
    futures: Option<Futures<'a>>,
    /// Futures bindings already reported: their `ctx.join_all` says nothing more.
    reported_futures: Vec<String>,
}

/// `let calls: Vec<_> = items.iter().map(|x| ctx.activity(f, x)).collect();`, right
/// before the `ctx.join_all(calls).await` that consumes it.
///
/// Why only right before: `collect` runs the closure at the `let`, the lowering at the
/// `join_all`; with nothing in between, both see the same values. And the binding is
/// never stored: it holds futures, which are not state.
struct Futures<'a> {
    name: String,
    ident: &'a syn::Ident,
    init: &'a syn::Expr,
}

/// `X.await` or `X.await?`: `(X, tried)`.
fn awaited(e: &syn::Expr) -> Option<(&syn::Expr, bool)> {
    match e {
        syn::Expr::Await(a) => Some((&a.base, false)),
        syn::Expr::Try(t) => match &*t.expr {
            syn::Expr::Await(a) => Some((&a.base, true)),
            _ => None,
        },
        syn::Expr::Paren(p) => awaited(&p.expr),
        _ => None,
    }
}

fn await_line(e: &syn::Expr) -> u32 {
    let span = match e {
        syn::Expr::Try(t) => match &*t.expr {
            syn::Expr::Await(a) => a.await_token.span(),
            other => other.span(),
        },
        syn::Expr::Await(a) => a.await_token.span(),
        other => other.span(),
    };
    span.start().line as u32
}

impl<'a> Parser<'a, '_> {
    fn declare(&mut self, ident: &syn::Ident, mutable: bool, origin: Origin<'a>) -> VarId {
        let id = self.vars.len();
        self.vars.push(Var {
            ident: ident.clone(),
            mutable,
            origin,
        });
        self.scopes
            .last_mut()
            .expect("this is a bug in saga-macros: no scope")
            .push((names::unraw(ident), id));
        id
    }

    /// A generated temporary (`__saga_tmp0`), invisible to user code.
    fn temp(&mut self, cp: CpId) -> VarId {
        let ident = syn::Ident::new(&format!("__saga_tmp{}", self.temps), Span::mixed_site());
        self.temps += 1;
        self.declare(&ident, false, Origin::Temp(cp))
    }

    fn resolve(&self, name: &str) -> Option<VarId> {
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.scopes
            .iter()
            .rev()
            .find_map(|s| s.iter().rev().find(|(n, _)| n == name).map(|(_, id)| *id))
    }

    fn resolve_all(&self, names: &[String]) -> Vec<VarId> {
        let mut ids: Vec<VarId> = names.iter().filter_map(|n| self.resolve(n)).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn scan(&self, f: impl FnOnce(&mut Scan)) -> Scan {
        let mut s = Scan::new(&self.ctx);
        f(&mut s);
        for (span, method) in &s.unawaited {
            self.cx.error_at(
                *span,
                format!(
                    "`{ctx}.{method}(..)` is a checkpoint and must be awaited where it stands: `{ctx}.{method}(..).await`; to run several at once, await them together with `{ctx}.join((..))` or `{ctx}.join_all(items.iter().map(|item| {ctx}.{method}(..)))`",
                    ctx = self.ctx
                ),
            );
        }
        s
    }

    fn uses_of_expr(&self, e: &syn::Expr) -> Vec<VarId> {
        let s = self.scan(|s| s.visit_expr(e));
        self.resolve_all(&s.names)
    }

    /// Reports every `.await` in `e` as misplaced.
    fn no_await(&self, place: AwaitPlace, f: impl FnOnce(&mut AwaitFinder)) {
        for (span, place) in AwaitFinder::run(place, f) {
            self.cx.error_at(span, place.message());
        }
    }

    fn with_scope<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        self.scopes.push(Vec::new());
        let out = f(self);
        self.scopes.pop();
        out
    }

    fn block(&mut self, b: &'a syn::Block, mode: Tail) -> Block<'a> {
        self.with_scope(|p| {
            let mut out = Vec::new();
            p.stmts(&b.stmts, mode, &mut out);
            Block { stmts: out }
        })
    }

    fn stmts(&mut self, stmts: &'a [syn::Stmt], mode: Tail, out: &mut Vec<Stmt<'a>>) {
        for (i, stmt) in stmts.iter().enumerate() {
            if let Some(futures) = self.futures_binding(stmt) {
                self.bind_futures(futures, &stmts[i + 1..]);
                continue;
            }
            let last = i + 1 == stmts.len();
            match stmt {
                syn::Stmt::Expr(e, None) if last && mode != Tail::Stmt => {
                    self.tail_expr(e, mode, out)
                }
                _ => self.stmt(stmt, out),
            }
            if let Some(unused) = self.futures.take() {
                self.cx.error_spanned_by(
                    unused.ident,
                    format!(
                        "checkpoint futures bound to `{name}` must be awaited by the next statement as `{ctx}.join_all({name}).await`, where an `.await` may stand",
                        name = unused.name,
                        ctx = self.ctx
                    ),
                );
            }
        }
    }

    /// `let name[: T] = <iter>.map(|x| ctx.<checkpoint>(..))[.collect()];`
    fn futures_binding(&self, stmt: &'a syn::Stmt) -> Option<Futures<'a>> {
        let syn::Stmt::Local(local) = stmt else {
            return None;
        };
        let init = local.init.as_ref()?;
        let pat = match &local.pat {
            syn::Pat::Type(pt) => &*pt.pat,
            other => other,
        };
        let syn::Pat::Ident(pi) = pat else {
            return None;
        };
        if init.diverge.is_some() || pi.by_ref.is_some() || pi.subpat.is_some() {
            return None;
        }
        let syn::Expr::MethodCall(map) = strip_collect(&init.expr) else {
            return None;
        };
        let Some(syn::Expr::Closure(c)) = single_arg(map) else {
            return None;
        };
        let tail = match closure_item(c) {
            Ok((_, tail)) => strip_parens(tail),
            Err(_) => return None,
        };
        let base = match tail {
            syn::Expr::Await(a) => &*a.base,
            other => other,
        };
        let is_checkpoint = matches!(base, syn::Expr::MethodCall(mc)
            if (self.is_ctx(&mc.receiver) && CHECKPOINT_METHODS.contains(&mc.method.to_string().as_str()))
                || (mc.method == "timeout" && matches!(&*mc.receiver, syn::Expr::MethodCall(inner) if self.is_ctx(&inner.receiver))));
        (map.method == "map" && is_checkpoint).then(|| Futures {
            name: names::unraw(&pi.ident),
            ident: &pi.ident,
            init: &init.expr,
        })
    }

    /// Keeps `futures` for the `ctx.join_all` of the next statement, or reports why it
    /// cannot be.
    fn bind_futures(&mut self, futures: Futures<'a>, rest: &'a [syn::Stmt]) {
        let ctx = self.ctx.clone();
        let consumed = rest.first().is_some_and(|next| {
            let mut find = FindJoinAllOf {
                ctx: &ctx,
                name: &futures.name,
                found: false,
            };
            find.visit_stmt(next);
            find.found
        });
        if !consumed {
            self.cx.error_spanned_by(
                futures.ident,
                format!(
                    "checkpoint futures bound to `{name}` must be awaited in the next statement: `let results = {ctx}.join_all({name}).await;` (or pass the iterator to `{ctx}.join_all(..)` directly)",
                    name = futures.name
                ),
            );
            self.reported_futures.push(futures.name);
            return;
        }
        // After the `join_all`, the binding is moved: a later use is a bug, not a read.
        for stmt in &rest[1..] {
            if let syn::Stmt::Local(l) = stmt {
                if bindings(&l.pat)
                    .iter()
                    .any(|b| names::unraw(b.ident) == futures.name)
                {
                    break;
                }
            }
            let mut scan = Scan::new(&ctx);
            scan.visit_stmt(stmt);
            if scan.names.contains(&futures.name) {
                let mut find = FindName {
                    name: &futures.name,
                    found: None,
                };
                find.visit_stmt(stmt);
                self.cx.error_at(
                    find.found.unwrap_or_else(|| stmt.span()),
                    format!(
                        "`{name}` was consumed by `{ctx}.join_all({name})`; use the results it gave",
                        name = futures.name
                    ),
                );
                break;
            }
        }
        self.futures = Some(futures);
    }

    fn stmt(&mut self, stmt: &'a syn::Stmt, out: &mut Vec<Stmt<'a>>) {
        match stmt {
            syn::Stmt::Local(local) => self.local(stmt, local, out),
            syn::Stmt::Expr(e, _) => {
                if has_await(e) {
                    self.expr_stmt(e, out);
                } else {
                    out.push(self.plain(PlainNode::Stmt(stmt)));
                }
            }
            syn::Stmt::Macro(m) => {
                self.no_await(AwaitPlace::Nested, |f| f.visit_macro(&m.mac));
                out.push(self.plain(PlainNode::Stmt(stmt)));
            }
            syn::Stmt::Item(_) => out.push(self.plain(PlainNode::Stmt(stmt))),
        }
    }

    /// A statement without a checkpoint.
    fn plain(&mut self, node: PlainNode<'a>) -> Stmt<'a> {
        let scan = match node {
            PlainNode::Stmt(s) => self.scan(|v| v.visit_stmt(s)),
            PlainNode::Expr(e) => self.scan(|v| v.visit_expr(e)),
        };
        let uses = self.resolve_all(&scan.names);
        let mut defs = Vec::new();
        let mut falls_through = true;
        let expr = match node {
            PlainNode::Stmt(syn::Stmt::Expr(e, _)) | PlainNode::Expr(e) => Some(e),
            PlainNode::Stmt(syn::Stmt::Macro(m)) => {
                if is_diverging_macro(&m.mac) {
                    falls_through = false;
                }
                None
            }
            _ => None,
        };
        if let Some(e) = expr {
            match e {
                syn::Expr::Return(_) | syn::Expr::Break(_) | syn::Expr::Continue(_) => {
                    falls_through = false
                }
                syn::Expr::Macro(m) if is_diverging_macro(&m.mac) => falls_through = false,
                // `x = e` overwrites `x`, but is not a kill for liveness: the
                // re-emitted assignment needs `x` declared in every segment that
                // reaches it, so a stored `x` stays stored.
                _ => {}
            }
        }
        if let PlainNode::Stmt(syn::Stmt::Local(local)) = node {
            for b in bindings(&local.pat) {
                let origin = if b.by_ref {
                    Origin::Ref
                } else if let Some(ty) = b.ty {
                    Origin::Annotated(ty)
                } else if let (syn::Pat::Ident(_), Some(init)) = (&local.pat, &local.init) {
                    Origin::Init(&init.expr)
                } else {
                    Origin::Pattern
                };
                defs.push(self.declare(b.ident, b.mutable, origin));
            }
        }
        Stmt::Plain(Plain {
            node,
            uses,
            defs,
            jumps: scan.jumps,
            falls_through,
            returns: scan.returns,
            fails: scan.fails,
        })
    }

    fn local(&mut self, stmt: &'a syn::Stmt, local: &'a syn::Local, out: &mut Vec<Stmt<'a>>) {
        let Some(init) = &local.init else {
            out.push(self.plain(PlainNode::Stmt(stmt)));
            return;
        };
        if let Some((_, diverge)) = &init.diverge {
            self.no_await(AwaitPlace::Nested, |f| f.visit_expr(diverge));
        }
        if let Some((base, tried)) = awaited(&init.expr) {
            let Some(cp) = self.checkpoint(&init.expr, base, tried) else {
                return;
            };
            let mut vars = Vec::new();
            let simple = matches!(&local.pat, syn::Pat::Ident(_));
            for b in bindings(&local.pat) {
                let origin = if b.by_ref {
                    Origin::Ref
                } else if let Some(ty) = b.ty {
                    Origin::Annotated(ty)
                } else if simple {
                    Origin::Checkpoint(cp)
                } else {
                    Origin::Pattern
                };
                vars.push(self.declare(b.ident, b.mutable, origin));
            }
            out.push(Stmt::Await {
                cp,
                bind: Bind::Let { local, vars },
            });
        } else if matches!(
            &*init.expr,
            syn::Expr::Loop(_) | syn::Expr::While(_) | syn::Expr::ForLoop(_)
        ) && has_await(&init.expr)
        {
            self.cx.error_spanned_by(
                &init.expr,
                "a loop with a checkpoint inside cannot give a value; declare the variable before the loop and assign it inside",
            );
        } else if matches!(
            &*init.expr,
            syn::Expr::If(_) | syn::Expr::Match(_) | syn::Expr::Block(_)
        ) && has_await(&init.expr)
        {
            // `let x = match .. { .. => ctx.a(..).await?, .. };`: the construct gives
            // the value through its branches' tails.
            let mut stmts = Vec::new();
            self.construct(&init.expr, Tail::Value, &mut stmts);
            let Some(value) = stmts.pop() else { return };
            out.extend(stmts);
            let mut vars = Vec::new();
            for b in bindings(&local.pat) {
                let origin = if b.by_ref {
                    Origin::Ref
                } else if let Some(ty) = b.ty {
                    Origin::Annotated(ty)
                } else {
                    Origin::Value
                };
                vars.push(self.declare(b.ident, b.mutable, origin));
            }
            out.push(Stmt::Bind {
                local,
                vars,
                value: Box::new(value),
            });
        } else {
            self.no_await(AwaitPlace::Nested, |f| f.visit_expr(&init.expr));
            out.push(self.plain(PlainNode::Stmt(stmt)));
        }
    }

    /// An expression statement that contains `.await`.
    fn expr_stmt(&mut self, e: &'a syn::Expr, out: &mut Vec<Stmt<'a>>) {
        if let Some((base, tried)) = awaited(e) {
            if let Some(cp) = self.checkpoint(e, base, tried) {
                out.push(Stmt::Await {
                    cp,
                    bind: Bind::Discard,
                });
            }
            return;
        }
        match e {
            syn::Expr::Assign(a) => self.assign_await(e, &a.left, &a.right, None, out),
            syn::Expr::Binary(b) if is_compound_assign(&b.op) => {
                self.assign_await(e, &b.left, &b.right, Some(&b.op), out)
            }
            syn::Expr::Return(r) => match r.expr.as_deref() {
                Some(v) => self.returned(v, r.return_token.span, out),
                None => self.no_await(AwaitPlace::Nested, |f| f.visit_expr(e)),
            },
            syn::Expr::If(_) | syn::Expr::Match(_) | syn::Expr::Block(_) => {
                self.construct(e, Tail::Stmt, out)
            }
            syn::Expr::Loop(_) | syn::Expr::While(_) | syn::Expr::ForLoop(_) => {
                self.construct(e, Tail::Stmt, out)
            }
            _ => self.no_await(AwaitPlace::Nested, |f| f.visit_expr(e)),
        }
    }

    /// `place = ctx.x(..).await?` or `place += ctx.x(..).await?`.
    fn assign_await(
        &mut self,
        e: &'a syn::Expr,
        left: &'a syn::Expr,
        right: &'a syn::Expr,
        op: Option<&'a syn::BinOp>,
        out: &mut Vec<Stmt<'a>>,
    ) {
        let Some((base, tried)) = awaited(right) else {
            self.no_await(AwaitPlace::Nested, |f| f.visit_expr(e));
            return;
        };
        self.no_await(AwaitPlace::Nested, |f| f.visit_expr(left));
        // The place is read (a compound assignment) or must exist (a plain one): a use.
        let uses = self.uses_of_expr(left);
        if let Some(cp) = self.checkpoint(right, base, tried) {
            out.push(Stmt::Await {
                cp,
                bind: Bind::Assign {
                    place: left,
                    op,
                    uses,
                },
            });
        }
    }

    /// `return <e>` or the tail `<e>`: the workflow's result.
    fn returned(&mut self, e: &'a syn::Expr, span: Span, out: &mut Vec<Stmt<'a>>) {
        if let Some((base, tried)) = awaited(e) {
            if let Some(cp) = self.checkpoint(e, base, tried) {
                let t = self.temp(cp);
                out.push(Stmt::Await {
                    cp,
                    bind: Bind::Temp(t),
                });
                out.push(Stmt::Return(Returned::Temp(t), span));
            }
        } else {
            self.no_await(AwaitPlace::Nested, |f| f.visit_expr(e));
            let uses = self.uses_of_expr(e);
            out.push(Stmt::Return(Returned::Expr { expr: e, uses }, span));
        }
    }

    /// A block's tail expression: the workflow's result (`Return`), the value of an
    /// enclosing `let x = if/match/{..}` (`Value`), or discarded (`Stmt`).
    fn tail_expr(&mut self, e: &'a syn::Expr, mode: Tail, out: &mut Vec<Stmt<'a>>) {
        match e {
            syn::Expr::If(_) | syn::Expr::Match(_) | syn::Expr::Block(_) if has_await(e) => {
                self.construct(e, mode, out)
            }
            syn::Expr::Loop(_) | syn::Expr::While(_) | syn::Expr::ForLoop(_) if has_await(e) => {
                if mode == Tail::Value {
                    self.cx.error_spanned_by(e, "a loop with a checkpoint inside cannot give a value; assign a variable inside it instead");
                } else {
                    self.construct(e, Tail::Stmt, out)
                }
            }
            _ => match mode {
                Tail::Return => self.returned(e, e.span(), out),
                Tail::Value => {
                    if let Some((base, tried)) = awaited(e) {
                        if let Some(cp) = self.checkpoint(e, base, tried) {
                            let t = self.temp(cp);
                            out.push(Stmt::Await {
                                cp,
                                bind: Bind::Temp(t),
                            });
                            out.push(Stmt::Value(Returned::Temp(t)));
                        }
                    } else {
                        self.no_await(AwaitPlace::Nested, |f| f.visit_expr(e));
                        let uses = self.uses_of_expr(e);
                        out.push(Stmt::Value(Returned::Expr { expr: e, uses }));
                    }
                }
                Tail::Stmt => {
                    if has_await(e) {
                        self.expr_stmt(e, out);
                    } else {
                        out.push(self.plain(PlainNode::Expr(e)));
                    }
                }
            },
        }
    }

    /// `if`, `match`, loops and blocks with a checkpoint inside. `mode`: what the construct
    /// is the body's tail, so its branches' tails are the result.
    fn construct(&mut self, e: &'a syn::Expr, mode: Tail, out: &mut Vec<Stmt<'a>>) {
        match e {
            syn::Expr::If(i) => self.if_(i, mode, out),
            syn::Expr::Match(m) => self.match_(m, mode, out),
            syn::Expr::Block(b) => {
                let block = self.block(&b.block, mode);
                out.push(Stmt::Block {
                    label: b.label.as_ref(),
                    block,
                });
            }
            syn::Expr::Loop(l) => {
                let body = self.block(&l.body, Tail::Stmt);
                out.push(Stmt::Loop {
                    label: l.label.as_ref(),
                    kind: LoopKind::Loop,
                    body,
                });
            }
            syn::Expr::While(w) => {
                self.no_await(AwaitPlace::WhileCond, |f| f.visit_expr(&w.cond));
                let (kind, body) = if let syn::Expr::Let(l) = &*w.cond {
                    let uses = self.uses_of_expr(&l.expr);
                    self.with_scope(|p| {
                        let vars = p.pattern_vars(&l.pat);
                        let body = p.block(&w.body, Tail::Stmt);
                        (
                            LoopKind::WhileLet {
                                pat: &l.pat,
                                expr: &l.expr,
                                uses,
                                vars,
                            },
                            body,
                        )
                    })
                } else {
                    let uses = self.uses_of_expr(&w.cond);
                    (
                        LoopKind::While {
                            expr: &w.cond,
                            uses,
                        },
                        self.block(&w.body, Tail::Stmt),
                    )
                };
                out.push(Stmt::Loop {
                    label: w.label.as_ref(),
                    kind,
                    body,
                });
            }
            syn::Expr::ForLoop(f) => {
                self.no_await(AwaitPlace::Nested, |v| v.visit_expr(&f.expr));
                let uses = self.uses_of_expr(&f.expr);
                let ident =
                    syn::Ident::new(&format!("__saga_cursor{}", self.temps), Span::mixed_site());
                self.temps += 1;
                let cursor = self.declare(&ident, true, Origin::Cursor(&f.expr));
                let (vars, body) = self.with_scope(|p| {
                    let mut vars = Vec::new();
                    for b in bindings(&f.pat) {
                        let origin = match (b.ty, &*f.pat) {
                            _ if b.by_ref => Origin::Ref,
                            (Some(ty), _) => Origin::Annotated(ty),
                            (None, syn::Pat::Ident(_)) => Origin::ForItem(cursor),
                            _ => Origin::Pattern,
                        };
                        vars.push(p.declare(b.ident, b.mutable, origin));
                    }
                    (vars, p.block(&f.body, Tail::Stmt))
                });
                out.push(Stmt::Loop {
                    label: f.label.as_ref(),
                    kind: LoopKind::For {
                        pat: &f.pat,
                        cursor,
                        uses,
                        vars,
                    },
                    body,
                });
            }
            _ => self.no_await(AwaitPlace::Nested, |f| f.visit_expr(e)),
        }
    }

    /// Declares the bindings of a `match` / `if let` / `while let` pattern.
    fn pattern_vars(&mut self, pat: &'a syn::Pat) -> Vec<VarId> {
        bindings(pat)
            .into_iter()
            .map(|b| {
                let origin = match b.ty {
                    _ if b.by_ref => Origin::Ref,
                    Some(ty) => Origin::Annotated(ty),
                    None => Origin::Pattern,
                };
                self.declare(b.ident, b.mutable, origin)
            })
            .collect()
    }

    fn if_(&mut self, i: &'a syn::ExprIf, mode: Tail, out: &mut Vec<Stmt<'a>>) {
        let (cond, pat_scope) = match &*i.cond {
            syn::Expr::Let(l) => {
                self.no_await(AwaitPlace::Nested, |f| f.visit_expr(&l.expr));
                (Some((&*l.pat, &*l.expr)), true)
            }
            c => {
                if let Some((base, tried)) = awaited(c) {
                    if let Some(cp) = self.checkpoint(c, base, tried) {
                        let t = self.temp(cp);
                        out.push(Stmt::Await {
                            cp,
                            bind: Bind::Temp(t),
                        });
                        let (then, els) = self.branches(i, mode);
                        out.push(Stmt::If {
                            cond: Cond::Temp(t),
                            then,
                            els,
                        });
                    }
                    return;
                }
                self.no_await(AwaitPlace::Nested, |f| f.visit_expr(c));
                (None, false)
            }
        };
        let cond = match cond {
            Some((pat, expr)) => {
                let uses = self.uses_of_expr(expr);
                self.scopes.push(Vec::new());
                let vars = self.pattern_vars(pat);
                Cond::Let {
                    pat,
                    expr,
                    uses,
                    vars,
                }
            }
            None => Cond::Expr {
                expr: &i.cond,
                uses: self.uses_of_expr(&i.cond),
            },
        };
        let then = self.block(&i.then_branch, mode);
        if pat_scope {
            self.scopes.pop();
        }
        let els = self.else_branch(i, mode);
        out.push(Stmt::If { cond, then, els });
    }

    fn branches(&mut self, i: &'a syn::ExprIf, mode: Tail) -> (Block<'a>, Option<Block<'a>>) {
        let then = self.block(&i.then_branch, mode);
        (then, self.else_branch(i, mode))
    }

    fn else_branch(&mut self, i: &'a syn::ExprIf, mode: Tail) -> Option<Block<'a>> {
        let (_, els) = i.else_branch.as_ref()?;
        Some(match &**els {
            syn::Expr::Block(b) if b.label.is_none() => self.block(&b.block, mode),
            other => self.with_scope(|p| {
                let mut stmts = Vec::new();
                p.tail_expr(other, mode, &mut stmts);
                Block { stmts }
            }),
        })
    }

    fn match_(&mut self, m: &'a syn::ExprMatch, mode: Tail, out: &mut Vec<Stmt<'a>>) {
        let scrutinee = if let Some((base, tried)) = awaited(&m.expr) {
            let Some(cp) = self.checkpoint(&m.expr, base, tried) else {
                return;
            };
            let t = self.temp(cp);
            out.push(Stmt::Await {
                cp,
                bind: Bind::Temp(t),
            });
            Scrutinee::Temp(t)
        } else {
            self.no_await(AwaitPlace::Nested, |f| f.visit_expr(&m.expr));
            Scrutinee::Expr {
                expr: &m.expr,
                uses: self.uses_of_expr(&m.expr),
            }
        };
        let mut arms = Vec::new();
        for arm in &m.arms {
            self.no_await(AwaitPlace::Guard, |f| f.visit_pat(&arm.pat));
            let guard_uses = match &arm.pat {
                syn::Pat::Guard(g) => self.uses_of_expr(&g.guard),
                _ => Vec::new(),
            };
            let (vars, body) = self.with_scope(|p| {
                let vars = p.pattern_vars(&arm.pat);
                let body = match &*arm.body {
                    syn::Expr::Block(b) if b.label.is_none() => p.block(&b.block, mode),
                    other => {
                        let mut stmts = Vec::new();
                        p.tail_expr(other, mode, &mut stmts);
                        Block { stmts }
                    }
                };
                (vars, body)
            });
            arms.push(Arm {
                arm,
                vars,
                guard_uses,
                body,
            });
        }
        out.push(Stmt::Match { scrutinee, arms });
    }

    /// Recognises `ctx.<checkpoint>(..)` under an `.await`.
    fn checkpoint(
        &mut self,
        whole: &'a syn::Expr,
        base: &'a syn::Expr,
        tried: bool,
    ) -> Option<CpId> {
        let kind = match base {
            syn::Expr::MethodCall(mc) if self.is_ctx(&mc.receiver) && mc.method == "join" => {
                self.join(mc).map(CpKind::Join)
            }
            syn::Expr::MethodCall(mc) if self.is_ctx(&mc.receiver) && mc.method == "join_all" => {
                self.join_all(mc)
            }
            _ => match self.call(base) {
                Ok(call) => Some(CpKind::Single(call)),
                Err(e) => {
                    self.cx.syn_error(e);
                    None
                }
            },
        }?;
        if tried && matches!(kind, CpKind::Join(_) | CpKind::JoinAll { .. }) {
            self.cx.error_spanned_by(
                whole,
                "`ctx.join(..)` and `ctx.join_all(..)` give one result per branch; apply `?` to each: `let (a, b) = ctx.join((..)).await; let a = a?;`",
            );
        }
        if tried && matches!(kind, CpKind::Single(Call::Sleep { .. })) {
            self.cx
                .error_spanned_by(whole, "`ctx.sleep(d).await` returns `()`; remove the `?`");
        }
        let mut uses = Vec::new();
        let mut visit = |e: &syn::Expr| uses.extend(self.uses_of_expr(e));
        match &kind {
            CpKind::Single(c) => call_exprs(c, &mut visit),
            CpKind::Join(calls) => calls.iter().for_each(|c| call_exprs(c, &mut visit)),
            CpKind::JoinAll { iter, call, .. } => {
                visit(iter);
                call_exprs(call, &mut visit);
            }
        }
        if let CpKind::JoinAll { prelude, .. } = &kind {
            for stmt in *prelude {
                let scan = self.scan(|s| s.visit_stmt(stmt));
                uses.extend(self.resolve_all(&scan.names));
            }
        }
        uses.sort_unstable();
        uses.dedup();
        let id = self.checkpoints.len();
        self.checkpoints.push(Checkpoint {
            expr: whole,
            kind,
            tried,
            line: await_line(whole),
            uses,
        });
        Some(id)
    }

    fn is_ctx(&self, e: &syn::Expr) -> bool {
        matches!(e, syn::Expr::Path(p) if p.path.is_ident(&self.ctx))
    }

    fn join(&mut self, mc: &'a syn::ExprMethodCall) -> Option<Vec<Call<'a>>> {
        let arg = single_arg(mc);
        let elems: Vec<&syn::Expr> = match arg {
            Some(syn::Expr::Tuple(t)) if !t.elems.is_empty() => t.elems.iter().collect(),
            _ => {
                self.cx.error_spanned_by(
                    &mc.args,
                    "`ctx.join` takes a tuple of checkpoints: `ctx.join((ctx.activity(a, x), ctx.activity(b, y))).await`",
                );
                return None;
            }
        };
        let mut calls = Vec::new();
        for e in elems {
            match self.call(e) {
                Ok(Call::Signal { ty: None, .. }) => self.cx.error_spanned_by(
                    e,
                    "a signal inside `ctx.join` needs its payload type: `ctx.signal::<T>(name)`",
                ),
                Ok(c) => calls.push(c),
                Err(err) => self.cx.syn_error(err),
            }
        }
        Some(calls)
    }

    /// `ctx.join_all(<iter>.map(|pat| <item>))`, the iterator optionally collected or
    /// bound to a local by the previous statement ([`Futures`]).
    fn join_all(&mut self, mc: &'a syn::ExprMethodCall) -> Option<CpKind<'a>> {
        let ctx = &self.ctx;
        let shape = format!("`{ctx}.join_all` takes an iterator mapped to one checkpoint per item: `{ctx}.join_all(items.iter().map(|item| {ctx}.activity(f, item.clone()))).await`");
        let Some(arg) = single_arg(mc) else {
            self.cx.error_spanned_by(&mc.args, shape);
            return None;
        };
        let source = match strip_parens(arg) {
            syn::Expr::Path(p)
                if self.futures.as_ref().is_some_and(|f| {
                    p.path
                        .get_ident()
                        .is_some_and(|i| names::unraw(i) == f.name)
                }) =>
            {
                self.futures.take()?.init
            }
            other => other,
        };
        let map = match strip_collect(source) {
            syn::Expr::MethodCall(m) if m.method == "map" => m,
            syn::Expr::Macro(_) | syn::Expr::Array(_) => {
                self.cx.error_spanned_by(
                    arg,
                    format!("`{ctx}.join_all` takes an iterator, not a list of checkpoints; for a fixed set, use `{ctx}.join((a, b, ..)).await`, for one per item, `{ctx}.join_all(items.iter().map(|item| {ctx}.activity(f, item.clone()))).await`"),
                );
                return None;
            }
            syn::Expr::MethodCall(m) => {
                self.cx.error_spanned_by(
                    &m.method,
                    format!("`{ctx}.join_all` needs `.map(|item| {ctx}.<checkpoint>(..))` as the last step of the iterator; filter or enumerate before it: `items.iter().filter(..).map(|item| {ctx}.activity(f, item.clone()))`"),
                );
                return None;
            }
            syn::Expr::Path(p)
                if p.path
                    .get_ident()
                    .is_some_and(|i| self.reported_futures.contains(&names::unraw(i))) =>
            {
                return None;
            }
            syn::Expr::Path(_) => {
                self.cx.error_spanned_by(
                    arg,
                    format!("`{ctx}.join_all` cannot see what this holds; pass the mapped iterator itself, or bind it in the statement right before: `let calls: Vec<_> = items.iter().map(|item| {ctx}.activity(f, item.clone())).collect();`"),
                );
                return None;
            }
            _ => {
                self.cx.error_spanned_by(arg, shape);
                return None;
            }
        };
        let closure = match single_arg(map) {
            Some(syn::Expr::Closure(c)) if c.inputs.len() == 1 => c,
            Some(other) => {
                self.cx.error_spanned_by(
                    other,
                    format!("`{ctx}.join_all` needs a closure here, so the macro can see the checkpoint: `.map(|item| {ctx}.activity(f, item.clone()))`"),
                );
                return None;
            }
            None => {
                self.cx.error_spanned_by(map, shape);
                return None;
            }
        };
        if let syn::ReturnType::Type(arrow, ty) = &closure.output {
            self.cx.error_spanned_by(
                quote::quote!(#arrow #ty),
                "remove the closure's return type: it gives a checkpoint, whose type the macro knows",
            );
            return None;
        }
        self.no_await(AwaitPlace::Nested, |f| f.visit_expr(&map.receiver));
        let (prelude, tail) = match closure_item(closure) {
            Ok(item) => item,
            Err(e) => {
                self.cx.syn_error(e);
                return None;
            }
        };
        for stmt in prelude {
            self.no_await(AwaitPlace::Closure, |f| f.visit_stmt(stmt));
            let mut find = FindEscape { found: None };
            find.visit_stmt(stmt);
            if let Some(span) = find.found {
                self.cx.error_at(
                    span,
                    format!("`?` and `return` are not supported inside a `{ctx}.join_all` closure: it gives one checkpoint per item; check the items before the join"),
                );
            }
        }
        let is_call = match tail {
            syn::Expr::MethodCall(m) if self.is_ctx(&m.receiver) => true,
            syn::Expr::MethodCall(m) if m.method == "timeout" => {
                matches!(&*m.receiver, syn::Expr::MethodCall(inner) if self.is_ctx(&inner.receiver))
            }
            _ => false,
        };
        if !is_call {
            self.cx.error_spanned_by(
                tail,
                format!("each item of `{ctx}.join_all` must end in one checkpoint call, e.g. `{ctx}.activity(f, item)`; to pick between checkpoints per item, use one `{ctx}.join_all` for each, or decide inside an activity"),
            );
            return None;
        }
        match self.call(tail) {
            Ok(Call::Signal { ty: None, .. }) => {
                self.cx.error_spanned_by(
                    tail,
                    format!("a signal inside `{ctx}.join_all` needs its payload type: `{ctx}.signal::<T>(name)`"),
                );
                None
            }
            Ok(call) => Some(CpKind::JoinAll {
                iter: strip_parens(&map.receiver),
                pat: &closure.inputs[0],
                prelude,
                call,
            }),
            Err(e) => {
                self.cx.syn_error(e);
                None
            }
        }
    }

    /// `ctx.activity(f, input)`, `ctx.local_activity(f, input)`, `ctx.child(wf, input)`,
    /// `ctx.sleep(d)`, `ctx.signal::<T>(name)[.timeout(d)]`.
    fn call(&self, e: &'a syn::Expr) -> syn::Result<Call<'a>> {
        let not_ctx = || {
            syn::Error::new_spanned(
                e,
                format!(
                    "`.await` on something that is not a workflow-context future; a workflow awaits only `{ctx}.activity`, `{ctx}.local_activity`, `{ctx}.child`, `{ctx}.sleep`, `{ctx}.signal`, `{ctx}.join` and `{ctx}.join_all` (call other async code from an activity)",
                    ctx = self.ctx
                ),
            )
        };
        let syn::Expr::MethodCall(mc) = e else {
            return Err(not_ctx());
        };
        for a in &mc.args {
            self.no_await(AwaitPlace::Nested, |f| f.visit_expr(a));
        }
        if mc.method == "timeout" {
            if let syn::Expr::MethodCall(inner) = &*mc.receiver {
                if self.is_ctx(&inner.receiver) && inner.method == "signal" {
                    let Call::Signal { ty, name, .. } = self.call(&mc.receiver)? else {
                        unreachable!("this is a bug in saga-macros: signal is not a signal");
                    };
                    let timeout = single_arg(mc).ok_or_else(|| {
                        syn::Error::new_spanned(&mc.args, "`.timeout` takes one `Duration`")
                    })?;
                    return Ok(Call::Signal {
                        ty,
                        name,
                        timeout: Some(timeout),
                    });
                }
            }
            return Err(not_ctx());
        }
        if !self.is_ctx(&mc.receiver) {
            return Err(not_ctx());
        }
        let args: Vec<&syn::Expr> = mc.args.iter().collect();
        let handle = |e: &'a syn::Expr, what: &str| match e {
            syn::Expr::Path(p) if p.qself.is_none() => Ok(&p.path),
            other => Err(syn::Error::new_spanned(
                other,
                format!("expected the {what}'s name, e.g. `reserve_inventory`"),
            )),
        };
        let arity = |n: usize, usage: &str| {
            if args.len() == n {
                Ok(())
            } else {
                Err(syn::Error::new_spanned(
                    &mc.args,
                    format!("expected {usage}"),
                ))
            }
        };
        match mc.method.to_string().as_str() {
            m @ ("activity" | "local_activity") => {
                arity(2, &format!("`{}.{m}(activity_fn, input)`", self.ctx))?;
                Ok(Call::Activity {
                    handle: handle(args[0], "activity")?,
                    input: args[1],
                    local: m == "local_activity",
                })
            }
            "child" => {
                arity(2, &format!("`{}.child(workflow_fn, input)`", self.ctx))?;
                Ok(Call::Child {
                    handle: handle(args[0], "workflow")?,
                    input: args[1],
                })
            }
            "sleep" => {
                arity(1, &format!("`{}.sleep(duration)`", self.ctx))?;
                Ok(Call::Sleep { duration: args[0] })
            }
            "signal" => {
                arity(1, &format!("`{}.signal::<T>(name)`", self.ctx))?;
                let ty = match &mc.turbofish {
                    Some(t) => match t.args.first() {
                        Some(syn::GenericArgument::Type(ty)) if t.args.len() == 1 => Some(ty),
                        _ => {
                            return Err(syn::Error::new_spanned(
                                t,
                                "expected one payload type: `signal::<T>`",
                            ))
                        }
                    },
                    None => None,
                };
                Ok(Call::Signal {
                    ty,
                    name: args[0],
                    timeout: None,
                })
            }
            _ => Err(not_ctx()),
        }
    }
}

fn single_arg(mc: &syn::ExprMethodCall) -> Option<&syn::Expr> {
    match mc.args.len() {
        1 => mc.args.first(),
        _ => None,
    }
}

/// The argument expressions of a call (evaluated when the checkpoint is reached).
pub(crate) fn call_exprs<'a>(c: &Call<'a>, f: &mut impl FnMut(&'a syn::Expr)) {
    match c {
        Call::Activity { input, .. } | Call::Child { input, .. } => f(input),
        Call::Sleep { duration } => f(duration),
        Call::Signal { name, timeout, .. } => {
            f(name);
            if let Some(t) = timeout {
                f(t);
            }
        }
    }
}

fn strip_parens(e: &syn::Expr) -> &syn::Expr {
    match e {
        syn::Expr::Paren(p) => strip_parens(&p.expr),
        other => other,
    }
}

/// `it.collect()` / `it.collect::<Vec<_>>()` → `it`: joining the collected futures is
/// joining the iterator's.
fn strip_collect(e: &syn::Expr) -> &syn::Expr {
    match strip_parens(e) {
        syn::Expr::MethodCall(m) if m.method == "collect" && m.args.is_empty() => {
            strip_parens(&m.receiver)
        }
        other => other,
    }
}

/// The per-item part of a `ctx.join_all` closure: `(plain statements, the checkpoint)`.
///
/// Input: `|x| ctx.activity(f, x)`, `|x| { let y = x * 2; ctx.activity(f, y) }`,
/// `|x| async move { ctx.activity(f, x).await }` (an `async` block or closure awaits
/// its one checkpoint in its tail).
/// Output: `([], ctx.activity(f, x))`, `([let y = x * 2;], ctx.activity(f, y))`,
/// `([], ctx.activity(f, x))`.
fn closure_item(c: &syn::ExprClosure) -> syn::Result<(&[syn::Stmt], &syn::Expr)> {
    let (block, is_async) = match strip_parens(&c.body) {
        syn::Expr::Async(a) => (Some(&a.block), true),
        syn::Expr::Block(b) if b.label.is_none() => (Some(&b.block), c.asyncness.is_some()),
        _ => (None, c.asyncness.is_some()),
    };
    let (prelude, tail) = match block {
        None => (&[][..], &*c.body),
        Some(b) => match b.stmts.split_last() {
            Some((syn::Stmt::Expr(tail, None), prelude)) => (prelude, tail),
            _ => {
                return Err(syn::Error::new_spanned(
                    b,
                    "end the closure with its checkpoint, without `;`: `|item| { ..; ctx.activity(f, item) }`",
                ))
            }
        },
    };
    let tail = strip_parens(tail);
    match (is_async, tail) {
        (true, syn::Expr::Await(a)) => Ok((prelude, strip_parens(&a.base))),
        (true, syn::Expr::Try(t)) if matches!(&*t.expr, syn::Expr::Await(_)) => {
            Err(syn::Error::new_spanned(
                t.question_token,
                "remove the `?`: `ctx.join_all` gives each item's `Result`; apply `?` to each result after the join",
            ))
        }
        (true, other) => Err(syn::Error::new_spanned(
            other,
            "an `async` item of `ctx.join_all` must end by awaiting its checkpoint: `async move { ctx.activity(f, item).await }`",
        )),
        (false, syn::Expr::Await(a)) => Err(syn::Error::new_spanned(
            a.await_token,
            "remove the `.await`: the closure gives the checkpoint, and `ctx.join_all(..).await` awaits them all",
        )),
        (false, other) => Ok((prelude, other)),
    }
}

/// The first `?` or `return` of a statement, outside nested closures and items.
struct FindEscape {
    found: Option<Span>,
}

impl<'ast> Visit<'ast> for FindEscape {
    fn visit_expr_try(&mut self, e: &'ast syn::ExprTry) {
        self.found.get_or_insert(e.question_token.span);
        syn::visit::visit_expr_try(self, e);
    }
    fn visit_expr_return(&mut self, e: &'ast syn::ExprReturn) {
        self.found.get_or_insert(e.return_token.span);
        syn::visit::visit_expr_return(self, e);
    }
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_expr_async(&mut self, _: &'ast syn::ExprAsync) {}
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

/// The first read of the local `name` in a statement.
struct FindName<'n> {
    name: &'n str,
    found: Option<Span>,
}

impl<'ast> Visit<'ast> for FindName<'_> {
    fn visit_expr_path(&mut self, e: &'ast syn::ExprPath) {
        if let Some(i) = e.path.get_ident() {
            if e.qself.is_none() && names::unraw(i) == self.name {
                self.found.get_or_insert(i.span());
            }
        }
    }
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

/// Finds `ctx.join_all(name)` in a statement.
struct FindJoinAllOf<'n> {
    ctx: &'n str,
    name: &'n str,
    found: bool,
}

impl<'ast> Visit<'ast> for FindJoinAllOf<'_> {
    fn visit_expr_method_call(&mut self, e: &'ast syn::ExprMethodCall) {
        let is_ctx = matches!(&*e.receiver, syn::Expr::Path(p) if p.path.is_ident(self.ctx));
        let of_name = matches!(single_arg(e).map(strip_parens), Some(syn::Expr::Path(p))
            if p.path.get_ident().is_some_and(|i| names::unraw(i) == self.name));
        self.found |= is_ctx && e.method == "join_all" && of_name;
        syn::visit::visit_expr_method_call(self, e);
    }
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

fn is_compound_assign(op: &syn::BinOp) -> bool {
    use syn::BinOp::*;
    matches!(
        op,
        AddAssign(_)
            | SubAssign(_)
            | MulAssign(_)
            | DivAssign(_)
            | RemAssign(_)
            | BitXorAssign(_)
            | BitAndAssign(_)
            | BitOrAssign(_)
            | ShlAssign(_)
            | ShrAssign(_)
    )
}

fn is_diverging_macro(m: &syn::Macro) -> bool {
    let name = m.path.segments.last().map(|s| s.ident.to_string());
    matches!(
        name.as_deref(),
        Some("panic" | "unreachable" | "todo" | "unimplemented")
    )
}
