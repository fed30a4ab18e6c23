//! Phase 5: the type of every stored binding (DESIGN.md 4.3), first that applies:
//! a `let x: T` annotation; the input parameter; the checkpoint itself
//! (`<f as Activity>::Output`, peeled of `Result` by `?`; `signal::<T>`;
//! `<wf as Workflow>::Output`); a literal suffix, a move or clone of a typed binding,
//! a cast, `.len()`, `String` builders; a `for` over a range with typed bounds or over
//! a typed `Vec<T>` (stored as a cursor). Anything else stored is an error on the
//! binding that names the checkpoint and shows the annotation to add. A borrow may not
//! live across a checkpoint.
//!
//! ```text
//! async fn f(ctx: &mut WorkflowContext, order: Order) -> ..   order: Order (parameter)
//!     let r = ctx.activity(reserve, order.clone()).await?;     r: <reserve as Activity>::Output
//!     let n: u32 = 3;                                          n: u32 (annotation)
//!     let s = format!("{n}");                                  s: String (initializer)
//!     for i in 0u64..n as u64 { ctx.sleep(..).await; }         cursor: Range<u64>, i: u64
//!     let v = Vec::new();  ctx.sleep(..).await;  v.len()       error: annotate `v`
//! ```

use std::collections::BTreeSet;

use syn::parse_quote;
use syn::spanned::Spanned;

use super::ir::*;
use crate::ctxt::Ctxt;

/// A typed field of a state variant.
pub(crate) struct Field {
    pub(crate) var: VarId,
    pub(crate) ty: syn::Type,
}

/// What is known of a binding's type.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
enum Ty {
    Known(syn::Type),
    Borrow(&'static str),
    Unknown,
}

pub(crate) struct Types<'b, 'a> {
    body: &'b Body<'a>,
    ctx: String,
    memo: Vec<Option<Ty>>,
    visiting: Vec<bool>,
}

/// Types the stored bindings: `(start fields, fields per checkpoint)`.
pub(crate) fn layout(
    cx: &Ctxt,
    body: &Body<'_>,
    ctx: &syn::Ident,
    start: &BTreeSet<VarId>,
    at: &[BTreeSet<VarId>],
) -> (Vec<Field>, Vec<Vec<Field>>) {
    let mut t = Types {
        body,
        ctx: ctx.to_string(),
        memo: vec![None; body.vars.len()],
        visiting: vec![false; body.vars.len()],
    };
    let mut reported = BTreeSet::new();
    let start_fields = start
        .iter()
        .filter_map(|v| t.field(cx, *v, None, &mut reported))
        .collect();
    let cp_fields = at
        .iter()
        .enumerate()
        .map(|(cp, live)| {
            t.check_shadowing(cx, cp, live);
            live.iter()
                .filter_map(|v| t.field(cx, *v, Some(cp), &mut reported))
                .collect()
        })
        .collect();
    (start_fields, cp_fields)
}

/// The type of a checkpoint's value, after `?` if `tried`.
pub(crate) fn checkpoint_ty(cp: &Checkpoint<'_>) -> Option<syn::Type> {
    match &cp.kind {
        CpKind::Single(call) => {
            let (ok, err) = call_types(call)?;
            Some(match (cp.tried, err) {
                (true, _) | (false, None) => ok,
                (false, Some(err)) => parse_quote!(::core::result::Result<#ok, #err>),
            })
        }
        CpKind::Join(calls) => {
            let tys: Option<Vec<syn::Type>> = calls.iter().map(branch_ty).collect();
            let tys = tys?;
            Some(parse_quote!((#(#tys,)*)))
        }
        CpKind::JoinAll { call, .. } => {
            let ty = branch_ty(call)?;
            Some(parse_quote!(::std::vec::Vec<#ty>))
        }
    }
}

/// The value of one branch of a join (no `?`).
pub(crate) fn branch_ty(call: &Call<'_>) -> Option<syn::Type> {
    let (ok, err) = call_types(call)?;
    Some(match err {
        Some(err) => parse_quote!(::core::result::Result<#ok, #err>),
        None => ok,
    })
}

/// `(Ok type, Some(error type))` of a call; sleeps give `((), None)`.
fn call_types(call: &Call<'_>) -> Option<(syn::Type, Option<syn::Type>)> {
    let span = match call {
        Call::Activity { handle, .. } | Call::Child { handle, .. } => handle.span(),
        Call::Sleep { duration } => duration.span(),
        Call::Signal { name, .. } => name.span(),
    };
    Some(match call {
        Call::Activity { handle, .. } => (
            syn::parse2(quote::quote_spanned!(span=> <#handle as ::saga_runtime::activity::Activity>::Output)).ok()?,
            Some(parse_quote!(::saga_runtime::activity::ActivityError)),
        ),
        Call::Child { handle, .. } => (
            syn::parse2(quote::quote_spanned!(span=> <#handle as ::saga_runtime::workflow::Workflow>::Output)).ok()?,
            Some(parse_quote!(::saga_runtime::workflow::ChildError)),
        ),
        Call::Sleep { .. } => (parse_quote!(()), None),
        Call::Signal { ty, .. } => {
            let ty = (*ty)?;
            (ty.clone(), Some(parse_quote!(::saga_runtime::workflow::SignalError)))
        }
    })
}

/// "`ctx.activity(charge_payment, ..).await` (line 12)".
pub(crate) fn describe(ctx: &str, cp: &Checkpoint<'_>) -> String {
    let method = |c: &Call<'_>| match c {
        Call::Activity { local: false, .. } => "activity",
        Call::Activity { local: true, .. } => "local_activity",
        Call::Child { .. } => "child",
        Call::Sleep { .. } => "sleep",
        Call::Signal { .. } => "signal",
    };
    let text = match &cp.kind {
        CpKind::Single(c @ (Call::Activity { .. } | Call::Child { .. })) => {
            format!("{ctx}.{}({}, ..)", method(c), c.awaits())
        }
        CpKind::Single(c @ Call::Signal { .. }) => format!("{ctx}.signal(\"{}\")", c.awaits()),
        CpKind::Single(c) => format!("{ctx}.{}(..)", method(c)),
        CpKind::Join(_) => format!("{ctx}.join(..)"),
        CpKind::JoinAll { .. } => format!("{ctx}.join_all(..)"),
    };
    format!("`{text}.await` (line {})", cp.line)
}

fn is_borrow_ty(ty: &syn::Type) -> bool {
    matches!(
        ty,
        syn::Type::Reference(_) | syn::Type::Ptr(_) | syn::Type::ImplTrait(_)
    )
}

impl Types<'_, '_> {
    fn field(
        &mut self,
        cx: &Ctxt,
        var: VarId,
        cp: Option<CpId>,
        reported: &mut BTreeSet<VarId>,
    ) -> Option<Field> {
        let v = &self.body.vars[var];
        match self.ty(var) {
            Ty::Known(ty) if !is_borrow_ty(&ty) => return Some(Field { var, ty }),
            Ty::Known(_) | Ty::Borrow(_) if !reported.insert(var) => {}
            Ty::Unknown if !reported.insert(var) => {}
            Ty::Known(_) | Ty::Borrow(_) => {
                let why = match self.ty(var) {
                    Ty::Borrow(why) => why,
                    _ => "its type is a reference",
                };
                let at = cp.map_or_else(String::new, |cp| {
                    format!(
                        " after the checkpoint {}",
                        describe(&self.ctx, &self.body.checkpoints[cp])
                    )
                });
                cx.error_spanned_by(
                    &v.ident,
                    format!(
                        "`{}` is a borrow ({why}) and is used{at}; a borrow cannot live across a checkpoint: store an owned value (clone it), or end the borrow before the `.await`",
                        v.ident
                    ),
                );
            }
            Ty::Unknown => {
                let at = cp.map_or_else(String::new, |cp| {
                    describe(&self.ctx, &self.body.checkpoints[cp])
                });
                let msg = match (&v.origin, cp) {
                    (Origin::Pattern, Some(_)) => format!(
                        "`{0}` is bound by a pattern and used after the checkpoint {at}; rebind it with its type before the checkpoint: `let {0}: Type = {0};`",
                        v.ident
                    ),
                    (Origin::Cursor(_), _) | (Origin::ForItem(_), _) => format!(
                        "cannot store the iteration of this `for` across the checkpoint {at}: iterate over a `Vec<T>` binding of known type (`let items: Vec<T> = ..`) or over a range with typed bounds (`0u32..n`)"
                    ),
                    (Origin::Checkpoint(_) | Origin::Temp(_), _) => format!(
                        "cannot store `{0}` across the checkpoint {at}: the signal's payload type is not known; write `{1}.signal::<T>(..)` or annotate the binding: `let {0}: T = ..`",
                        v.ident, self.ctx
                    ),
                    _ => format!(
                        "cannot store `{0}` across the checkpoint {at}: its type is not known; annotate the binding: `let {0}: Type = …`",
                        v.ident
                    ),
                };
                let span = match &v.origin {
                    Origin::Cursor(e) => e.span(),
                    _ => v.ident.span(),
                };
                cx.error_at(span, msg);
            }
        }
        None
    }

    /// Two stored bindings with one name (an inner `let` shadowing an outer one that
    /// is still needed) cannot be fields of one variant.
    fn check_shadowing(&self, cx: &Ctxt, cp: CpId, live: &BTreeSet<VarId>) {
        let mut seen: Vec<(String, VarId)> = Vec::new();
        for v in live {
            let name = self.body.vars[*v].ident.to_string();
            if seen.iter().any(|(n, _)| *n == name) {
                cx.error_spanned_by(
                    &self.body.vars[*v].ident,
                    format!(
                        "`{name}` shadows a binding of the same name that is also used after the checkpoint {}; rename one of them",
                        describe(&self.ctx, &self.body.checkpoints[cp])
                    ),
                );
            }
            seen.push((name, *v));
        }
    }

    fn ty(&mut self, var: VarId) -> Ty {
        if let Some(t) = &self.memo[var] {
            return t.clone();
        }
        if std::mem::replace(&mut self.visiting[var], true) {
            return Ty::Unknown;
        }
        let body = self.body;
        let t = match &body.vars[var].origin {
            Origin::Param(ty) | Origin::Annotated(ty) => Ty::Known((*ty).clone()),
            Origin::Init(e) => self.infer(e),
            Origin::Checkpoint(cp) | Origin::Temp(cp) => {
                checkpoint_ty(&body.checkpoints[*cp]).map_or(Ty::Unknown, Ty::Known)
            }
            Origin::Pattern | Origin::Value => Ty::Unknown,
            Origin::Ref => Ty::Borrow("a `ref` binding"),
            Origin::Cursor(e) => match self.cursor(e) {
                Some((cursor, _)) => Ty::Known(cursor),
                None => Ty::Unknown,
            },
            Origin::ForItem(cursor) => match &body.vars[*cursor].origin {
                Origin::Cursor(e) => match self.cursor(e) {
                    Some((_, item)) => Ty::Known(item),
                    None => Ty::Unknown,
                },
                _ => Ty::Unknown,
            },
        };
        self.visiting[var] = false;
        self.memo[var] = Some(t.clone());
        t
    }

    /// `(cursor type, item type)` of a `for` over `e`.
    pub(crate) fn cursor(&mut self, e: &syn::Expr) -> Option<(syn::Type, syn::Type)> {
        match strip(e) {
            syn::Expr::Range(r) => {
                let (start, end) = (r.start.as_deref()?, r.end.as_deref()?);
                let item = match (self.infer(start), self.infer(end)) {
                    (Ty::Known(t), _) | (_, Ty::Known(t)) => t,
                    _ => return None,
                };
                let cursor = match r.limits {
                    syn::RangeLimits::HalfOpen(_) => parse_quote!(::core::ops::Range<#item>),
                    syn::RangeLimits::Closed(_) => {
                        parse_quote!(::saga_runtime::__private::InclusiveCursor<#item>)
                    }
                };
                Some((cursor, item))
            }
            other => {
                let Ty::Known(ty) = self.infer(other) else {
                    return None;
                };
                let item = vec_item(&ty)?;
                Some((parse_quote!(::saga_runtime::__private::Cursor<#item>), item))
            }
        }
    }

    /// A small, syntactic type inference for initializers.
    fn infer(&mut self, e: &syn::Expr) -> Ty {
        match strip(e) {
            syn::Expr::Lit(l) => match &l.lit {
                syn::Lit::Int(i) if !i.suffix().is_empty() => ident_ty(i.suffix()),
                syn::Lit::Float(f) if !f.suffix().is_empty() => ident_ty(f.suffix()),
                syn::Lit::Bool(_) => Ty::Known(parse_quote!(bool)),
                syn::Lit::Char(_) => Ty::Known(parse_quote!(char)),
                syn::Lit::Str(_) => {
                    Ty::Borrow("a string literal is a `&str`; use `\"..\".to_string()`")
                }
                _ => Ty::Unknown,
            },
            syn::Expr::Path(p) => match p.path.get_ident().and_then(|i| self.lookup(i)) {
                Some(v) => self.ty(v),
                None => Ty::Unknown,
            },
            syn::Expr::Reference(_) => Ty::Borrow("it is initialised with a reference"),
            syn::Expr::Cast(c) => Ty::Known((*c.ty).clone()),
            syn::Expr::MethodCall(mc) if is_path(&mc.receiver, &self.ctx) => {
                match mc.method.to_string().as_str() {
                    "now" => Ty::Known(parse_quote!(
                        ::saga_runtime::__private::chrono::DateTime<
                            ::saga_runtime::__private::chrono::Utc,
                        >
                    )),
                    "random" => Ty::Known(parse_quote!(u64)),
                    "uuid" => Ty::Known(parse_quote!(::std::string::String)),
                    _ => Ty::Unknown,
                }
            }
            syn::Expr::MethodCall(mc) => match mc.method.to_string().as_str() {
                "clone" | "to_owned" | "into_iter" if mc.args.is_empty() => {
                    self.infer(&mc.receiver)
                }
                "to_string" => Ty::Known(parse_quote!(::std::string::String)),
                "len" | "count" => Ty::Known(parse_quote!(usize)),
                "iter" | "iter_mut" | "as_str" | "as_ref" | "as_slice" | "as_mut" => {
                    Ty::Borrow("it borrows from another binding")
                }
                _ => Ty::Unknown,
            },
            syn::Expr::Call(c) => match &*c.func {
                syn::Expr::Path(p) => {
                    let segs: Vec<String> = p
                        .path
                        .segments
                        .iter()
                        .map(|s| s.ident.to_string())
                        .collect();
                    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
                    match segs.as_slice() {
                        [.., "String", "from" | "new" | "with_capacity"] => {
                            Ty::Known(parse_quote!(::std::string::String))
                        }
                        _ => Ty::Unknown,
                    }
                }
                _ => Ty::Unknown,
            },
            syn::Expr::Macro(m) if m.mac.path.is_ident("format") => {
                Ty::Known(parse_quote!(::std::string::String))
            }
            syn::Expr::Binary(b) => {
                use syn::BinOp::*;
                match b.op {
                    Add(_) | Sub(_) | Mul(_) | Div(_) | Rem(_) | BitAnd(_) | BitOr(_)
                    | BitXor(_) => match self.infer(&b.left) {
                        Ty::Known(t) => Ty::Known(t),
                        _ => self.infer(&b.right),
                    },
                    Eq(_) | Ne(_) | Lt(_) | Le(_) | Gt(_) | Ge(_) | And(_) | Or(_) => {
                        Ty::Known(parse_quote!(bool))
                    }
                    _ => Ty::Unknown,
                }
            }
            syn::Expr::Unary(u) => match u.op {
                syn::UnOp::Not(_) | syn::UnOp::Neg(_) => self.infer(&u.expr),
                _ => Ty::Unknown,
            },
            syn::Expr::Struct(s) if s.qself.is_none() && s.path.segments.len() == 1 => {
                let p = &s.path;
                Ty::Known(parse_quote!(#p))
            }
            _ => Ty::Unknown,
        }
    }

    /// The binding `ident` refers to, by name among declared bindings (the latest
    /// declaration wins, as the parse phase resolved them).
    fn lookup(&self, ident: &syn::Ident) -> Option<VarId> {
        let name = ident.to_string();
        self.body.vars.iter().rposition(|v| v.ident == name)
    }
}

fn is_path(e: &syn::Expr, name: &str) -> bool {
    matches!(e, syn::Expr::Path(p) if p.path.is_ident(name))
}

fn strip(e: &syn::Expr) -> &syn::Expr {
    match e {
        syn::Expr::Paren(p) => strip(&p.expr),
        syn::Expr::Group(g) => strip(&g.expr),
        other => other,
    }
}

fn ident_ty(s: &str) -> Ty {
    match syn::parse_str::<syn::Type>(s) {
        Ok(t) => Ty::Known(t),
        Err(_) => Ty::Unknown,
    }
}

/// `Vec<T>` → `T`.
fn vec_item(ty: &syn::Type) -> Option<syn::Type> {
    let syn::Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Vec" {
        return None;
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(a) => match a.args.first()? {
            syn::GenericArgument::Type(t) => Some(t.clone()),
            _ => None,
        },
        _ => None,
    }
}
