//! The IR of a workflow body: the supported subset of Rust, with every checkpoint
//! recognised and every binding resolved to a [`VarId`].
//!
//! The IR borrows the syn nodes it came from (`'a`), so spans always point at the
//! user's tokens. Plain statements (no checkpoint inside) are kept as syn nodes and
//! re-emitted by codegen; only the control flow around checkpoints is modelled.

use proc_macro2::Span;

/// Index into [`Body::vars`].
pub(crate) type VarId = usize;
/// Index into [`Body::checkpoints`] (dense, in source order).
pub(crate) type CpId = usize;

/// The parsed workflow.
pub(crate) struct Body<'a> {
    pub(crate) block: Block<'a>,
    pub(crate) vars: Vec<Var<'a>>,
    pub(crate) checkpoints: Vec<Checkpoint<'a>>,
    /// The input parameter's binding, if the workflow takes one.
    pub(crate) param: Option<VarId>,
}

/// A block of statements: a scope.
#[derive(Default)]
pub(crate) struct Block<'a> {
    pub(crate) stmts: Vec<Stmt<'a>>,
}

/// A local binding.
pub(crate) struct Var<'a> {
    /// The user's identifier (its span is the declaration), or a generated one.
    pub(crate) ident: syn::Ident,
    pub(crate) mutable: bool,
    pub(crate) origin: Origin<'a>,
}

/// Where a binding comes from: decides how its type is found.
pub(crate) enum Origin<'a> {
    /// The workflow's input parameter.
    Param(&'a syn::Type),
    /// `let x: T = ..` or a typed sub-pattern.
    Annotated(&'a syn::Type),
    /// `let x = <expr>` without a checkpoint.
    Init(&'a syn::Expr),
    /// `let x = <checkpoint>` (the value after the optional `?`).
    Checkpoint(CpId),
    /// A binding in a `match` arm, `if let` or `while let` pattern, or a non-trivial
    /// `let` pattern.
    Pattern,
    /// A `ref` binding: always a borrow.
    Ref,
    /// The element of a lowered `for` over the cursor `VarId`.
    ForItem(VarId),
    /// The cursor of a lowered `for`, iterating over the expression.
    Cursor(&'a syn::Expr),
    /// A generated temporary holding a checkpoint's value (`match ctx.x(..).await`).
    Temp(CpId),
    /// `let x = if/match/{..}` with a checkpoint inside, without an annotation.
    Value,
}

/// A statement of the supported subset.
pub(crate) enum Stmt<'a> {
    /// A statement without a checkpoint, re-emitted as written.
    Plain(Plain<'a>),
    /// A checkpoint: suspend, then bind the woken value.
    Await { cp: CpId, bind: Bind<'a> },
    /// `if` / `if let` / `else` with a checkpoint inside.
    If {
        cond: Cond<'a>,
        then: Block<'a>,
        els: Option<Block<'a>>,
    },
    /// `match` with a checkpoint inside an arm.
    Match {
        scrutinee: Scrutinee<'a>,
        arms: Vec<Arm<'a>>,
    },
    /// `loop`, `while`, `while let` or `for` with a checkpoint inside.
    Loop {
        label: Option<&'a syn::Label>,
        kind: LoopKind<'a>,
        body: Block<'a>,
    },
    /// A (possibly labelled) block with a checkpoint inside.
    Block {
        label: Option<&'a syn::Label>,
        block: Block<'a>,
    },
    /// The body's value (its tail, or `return`).
    Return(Returned<'a>, Span),
    /// The tail value of a branch of a `let x = if/match/{..}` construct.
    Value(Returned<'a>),
    /// `let <pat> = <construct>;` where the construct (`If`, `Match` or `Block`)
    /// has a checkpoint inside and gives its value through `Value` tails.
    Bind {
        local: &'a syn::Local,
        vars: Vec<VarId>,
        value: Box<Stmt<'a>>,
    },
}

/// A statement without a checkpoint.
pub(crate) struct Plain<'a> {
    pub(crate) node: PlainNode<'a>,
    /// Bindings it reads (over-approximated).
    pub(crate) uses: Vec<VarId>,
    /// Bindings it defines (`let`) or overwrites (`x = ..`).
    pub(crate) defs: Vec<VarId>,
    /// `break` / `continue` out of it to an enclosing loop or block.
    pub(crate) jumps: Vec<Jump>,
    /// False after `return`, `break`, `continue` or `panic!`.
    pub(crate) falls_through: bool,
    /// Contains a `return` (for the diagram).
    pub(crate) returns: bool,
    /// Contains a `?` (for the diagram).
    pub(crate) fails: bool,
}

/// The syn node of a plain statement.
#[derive(Clone, Copy)]
pub(crate) enum PlainNode<'a> {
    Stmt(&'a syn::Stmt),
    /// A `match` arm body that is a bare expression.
    Expr(&'a syn::Expr),
}

/// A `break` or `continue` leaving a plain statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Jump {
    pub(crate) is_break: bool,
    /// `None`: the innermost loop.
    pub(crate) label: Option<String>,
}

/// What the woken value is bound to.
pub(crate) enum Bind<'a> {
    /// `ctx.x(..).await;`
    Discard,
    /// `let <pat> = ctx.x(..).await [else { .. }];`
    Let {
        local: &'a syn::Local,
        vars: Vec<VarId>,
    },
    /// `<place> = ctx.x(..).await;` or `<place> += ctx.x(..).await;`
    Assign {
        place: &'a syn::Expr,
        op: Option<&'a syn::BinOp>,
        uses: Vec<VarId>,
    },
    /// A generated temporary (match scrutinee, `if` condition, returned value).
    Temp(VarId),
}

/// An `if` condition.
pub(crate) enum Cond<'a> {
    Expr {
        expr: &'a syn::Expr,
        uses: Vec<VarId>,
    },
    Let {
        pat: &'a syn::Pat,
        expr: &'a syn::Expr,
        uses: Vec<VarId>,
        vars: Vec<VarId>,
    },
    Temp(VarId),
}

/// A `match` scrutinee.
pub(crate) enum Scrutinee<'a> {
    Expr {
        expr: &'a syn::Expr,
        uses: Vec<VarId>,
    },
    Temp(VarId),
}

/// A `match` arm.
pub(crate) struct Arm<'a> {
    pub(crate) arm: &'a syn::Arm,
    /// Bindings of the pattern.
    pub(crate) vars: Vec<VarId>,
    /// Bindings the guard reads.
    pub(crate) guard_uses: Vec<VarId>,
    pub(crate) body: Block<'a>,
}

/// The loops, as lowered.
pub(crate) enum LoopKind<'a> {
    Loop,
    While {
        expr: &'a syn::Expr,
        uses: Vec<VarId>,
    },
    WhileLet {
        pat: &'a syn::Pat,
        expr: &'a syn::Expr,
        uses: Vec<VarId>,
        vars: Vec<VarId>,
    },
    /// `for pat in expr`: `let mut cursor = expr; loop { let pat = next(cursor)?; .. }`.
    For {
        pat: &'a syn::Pat,
        cursor: VarId,
        uses: Vec<VarId>,
        vars: Vec<VarId>,
    },
}

/// The value a `Return` returns.
pub(crate) enum Returned<'a> {
    Expr {
        expr: &'a syn::Expr,
        uses: Vec<VarId>,
    },
    Temp(VarId),
}

/// One `.await` on a workflow-context future.
pub(crate) struct Checkpoint<'a> {
    /// The whole `ctx.x(..).await` expression.
    pub(crate) expr: &'a syn::Expr,
    pub(crate) kind: CpKind<'a>,
    /// `.await?`: an error fails the workflow.
    pub(crate) tried: bool,
    /// Source line of the `.await`.
    pub(crate) line: u32,
    /// Bindings the command's arguments read.
    pub(crate) uses: Vec<VarId>,
}

/// What a checkpoint awaits.
pub(crate) enum CpKind<'a> {
    Single(Call<'a>),
    /// `ctx.join((a, b, ..))`.
    Join(Vec<Call<'a>>),
    /// `ctx.join_all(iter.map(|pat| { prelude; call }))`.
    JoinAll {
        iter: &'a syn::Expr,
        pat: &'a syn::Pat,
        /// Plain statements run for each item before its call.
        prelude: &'a [syn::Stmt],
        call: Call<'a>,
    },
}

/// One workflow-context call.
pub(crate) enum Call<'a> {
    Activity {
        handle: &'a syn::Path,
        input: &'a syn::Expr,
        local: bool,
    },
    Child {
        handle: &'a syn::Path,
        input: &'a syn::Expr,
    },
    Sleep {
        duration: &'a syn::Expr,
    },
    Signal {
        ty: Option<&'a syn::Type>,
        name: &'a syn::Expr,
        timeout: Option<&'a syn::Expr>,
    },
}

impl Call<'_> {
    /// What the call waits for, as the checkpoint table and the diagram show it.
    pub(crate) fn awaits(&self) -> String {
        use quote::ToTokens;
        match self {
            Call::Activity { handle, .. } | Call::Child { handle, .. } => path_text(handle),
            Call::Sleep { duration } => squash(&duration.to_token_stream().to_string()),
            Call::Signal { name, .. } => match name {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => s.value(),
                other => squash(&other.to_token_stream().to_string()),
            },
        }
    }

    /// The checkpoint kind's name in `saga_runtime::workflow::CheckpointKind`.
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Call::Activity { local: false, .. } => "Activity",
            Call::Activity { local: true, .. } => "LocalActivity",
            Call::Child { .. } => "Child",
            Call::Sleep { .. } => "Sleep",
            Call::Signal { .. } => "Signal",
        }
    }
}

impl CpKind<'_> {
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            CpKind::Single(c) => c.kind_name(),
            CpKind::Join(_) => "Join",
            CpKind::JoinAll { .. } => "JoinAll",
        }
    }

    pub(crate) fn awaits(&self) -> String {
        match self {
            CpKind::Single(c) => c.awaits(),
            CpKind::Join(calls) => calls
                .iter()
                .map(Call::awaits)
                .collect::<Vec<_>>()
                .join(", "),
            CpKind::JoinAll { call, .. } => format!("[{}]", call.awaits()),
        }
    }
}

/// `a :: b` → `a::b`.
pub(crate) fn path_text(p: &syn::Path) -> String {
    use quote::ToTokens;
    squash(&p.to_token_stream().to_string())
}

/// Token text without the spaces `to_string` puts around punctuation.
pub(crate) fn squash(s: &str) -> String {
    s.replace(" :: ", "::")
        .replace(":: ", "::")
        .replace(" (", "(")
        .replace("( ", "(")
        .replace(" )", ")")
        .replace(" ,", ",")
        .replace(" .", ".")
        .replace(". ", ".")
}
