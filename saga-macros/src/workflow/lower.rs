//! Phase 3: the IR into a control-flow graph split at checkpoints.
//!
//! Input: the IR tree. Output: basic blocks of [`Op`]s (what each step reads and
//! defines) whose edges follow every way control can go: branches, loop back-edges,
//! `break`/`continue` (also out of plain statements), `return`. A checkpoint ends its
//! block (the suspension); the block after it starts with the binding of the woken
//! value. Liveness runs on this graph; the diagram follows its edges.
//!
//! ```text
//! let a = ctx.activity(f, x).await?;      bb0: use x | suspend cp0 → bb1
//! loop {                                  bb1: def a → bb2
//!     if a > 3 { break; }                 bb2 (head): use a → bb3, bb4
//!     ctx.sleep(d).await;                 bb3: use d | suspend cp1 → bb5 ...
//! }
//! ```

use super::ir::*;

pub(crate) type BbId = usize;

/// What one step reads and (re)defines.
#[derive(Debug, Default, Clone)]
pub(crate) struct Op {
    pub(crate) uses: Vec<VarId>,
    pub(crate) defs: Vec<VarId>,
}

/// A basic block.
#[derive(Debug, Default)]
pub(crate) struct Bb {
    pub(crate) ops: Vec<Op>,
    pub(crate) succs: Vec<BbId>,
    /// The block ends by suspending at this checkpoint (its one successor is the
    /// checkpoint's resume block).
    pub(crate) suspends: Option<CpId>,
    /// The block starts by binding a checkpoint's value with `?`: it may fail.
    pub(crate) fails: bool,
    /// The block ends with the workflow's result.
    pub(crate) returns: bool,
}

/// The graph.
#[derive(Debug)]
pub(crate) struct Cfg {
    pub(crate) blocks: Vec<Bb>,
    pub(crate) entry: BbId,
    /// Per checkpoint: the block that starts when it wakes.
    pub(crate) resume: Vec<BbId>,
    /// Per statement (by address): the block control reaches after it, if any.
    pub(crate) after: std::collections::HashMap<usize, BbId>,
}

impl Cfg {
    /// The blocks a segment starting at `from` can run through before it suspends
    /// (segment code after a suspension belongs to another arm).
    pub(crate) fn reachable_in_segment(&self, from: BbId) -> Vec<bool> {
        let mut seen = vec![false; self.blocks.len()];
        let mut stack = vec![from];
        while let Some(b) = stack.pop() {
            if std::mem::replace(&mut seen[b], true) {
                continue;
            }
            if self.blocks[b].suspends.is_none() {
                stack.extend(self.blocks[b].succs.iter().copied());
            }
        }
        seen
    }

    /// True if control can get past statement `s` within the segment whose blocks
    /// are `reach`.
    pub(crate) fn after_reachable(&self, s: &Stmt<'_>, reach: &[bool]) -> bool {
        self.after
            .get(&(s as *const Stmt<'_> as usize))
            .is_some_and(|bb| reach[*bb])
    }
}

struct Target {
    label: Option<String>,
    head: BbId,
    exit: BbId,
    is_loop: bool,
}

struct Lower {
    after: std::collections::HashMap<usize, BbId>,
    blocks: Vec<Bb>,
    targets: Vec<Target>,
    resume: Vec<Option<BbId>>,
}

pub(crate) fn lower(body: &Body<'_>) -> Cfg {
    let mut l = Lower {
        after: std::collections::HashMap::new(),
        blocks: Vec::new(),
        targets: Vec::new(),
        resume: vec![None; body.checkpoints.len()],
    };
    let entry = l.new_block();
    l.block(&body.block, entry, body);
    let resume = l
        .resume
        .into_iter()
        .map(|r| r.expect("this is a bug in saga-macros: a checkpoint was not lowered"))
        .collect();
    Cfg {
        blocks: l.blocks,
        entry,
        resume,
        after: l.after,
    }
}

impl Lower {
    fn new_block(&mut self) -> BbId {
        self.blocks.push(Bb::default());
        self.blocks.len() - 1
    }

    fn op(&mut self, bb: BbId, uses: &[VarId], defs: &[VarId]) {
        self.blocks[bb].ops.push(Op {
            uses: uses.to_vec(),
            defs: defs.to_vec(),
        });
    }

    fn edge(&mut self, from: BbId, to: BbId) {
        if !self.blocks[from].succs.contains(&to) {
            self.blocks[from].succs.push(to);
        }
    }

    /// Lowers `b` from `cur`; `None` if control never leaves its end.
    fn block(&mut self, b: &Block<'_>, cur: BbId, body: &Body<'_>) -> Option<BbId> {
        let mut cur = Some(cur);
        for s in &b.stmts {
            // Code after a diverging statement is unreachable, but its checkpoints
            // still get their variants: lower it from a block nothing jumps to.
            let from = match cur {
                Some(c) => c,
                None => self.new_block(),
            };
            cur = self.stmt(s, from, body);
        }
        cur
    }

    fn jump(&mut self, from: BbId, j: &Jump) {
        let target = self.targets.iter().rev().find(|t| match &j.label {
            Some(l) => t.label.as_deref() == Some(l),
            None => t.is_loop,
        });
        if let Some(t) = target {
            let to = if j.is_break { t.exit } else { t.head };
            self.edge(from, to);
        }
    }

    fn stmt(&mut self, s: &Stmt<'_>, cur: BbId, body: &Body<'_>) -> Option<BbId> {
        let after = self.stmt_inner(s, cur, body);
        if let Some(a) = after {
            self.after.insert(s as *const Stmt<'_> as usize, a);
        }
        after
    }

    fn stmt_inner(&mut self, s: &Stmt<'_>, cur: BbId, body: &Body<'_>) -> Option<BbId> {
        match s {
            Stmt::Plain(p) => {
                self.op(cur, &p.uses, &p.defs);
                self.blocks[cur].returns |= p.returns;
                self.blocks[cur].fails |= p.fails;
                for j in &p.jumps {
                    self.jump(cur, j);
                }
                p.falls_through.then_some(cur)
            }
            Stmt::Await { cp, bind } => {
                let checkpoint = &body.checkpoints[*cp];
                // The suspension gets a block of its own: `cur` may already jump
                // elsewhere (a `break` in a plain statement before it), and a
                // suspending block's only successor is the checkpoint's resume block.
                let at = self.new_block();
                self.edge(cur, at);
                self.op(at, &checkpoint.uses, &[]);
                self.blocks[at].suspends = Some(*cp);
                let r = self.new_block();
                self.edge(at, r);
                self.resume[*cp] = Some(r);
                let (uses, defs): (&[VarId], Vec<VarId>) = match bind {
                    Bind::Discard => (&[], Vec::new()),
                    Bind::Let { vars, .. } => (&[], vars.clone()),
                    Bind::Assign { uses, .. } => (uses, Vec::new()),
                    Bind::Temp(t) => (&[], vec![*t]),
                };
                self.op(r, uses, &defs);
                self.blocks[r].fails = checkpoint.tried;
                Some(r)
            }
            Stmt::If { cond, then, els } => {
                let (uses, vars): (&[VarId], &[VarId]) = match cond {
                    Cond::Expr { uses, .. } => (uses, &[]),
                    Cond::Let { uses, vars, .. } => (uses, vars),
                    Cond::Temp(t) => (std::slice::from_ref(t), &[]),
                };
                self.op(cur, uses, &[]);
                let t = self.new_block();
                self.edge(cur, t);
                self.op(t, &[], vars);
                let t_end = self.block(then, t, body);
                let e = self.new_block();
                self.edge(cur, e);
                let e_end = match els {
                    Some(b) => self.block(b, e, body),
                    None => Some(e),
                };
                self.join([t_end, e_end])
            }
            Stmt::Match { scrutinee, arms } => {
                let mut uses: Vec<VarId> = match scrutinee {
                    Scrutinee::Expr { uses, .. } => uses.clone(),
                    Scrutinee::Temp(t) => vec![*t],
                };
                for a in arms {
                    uses.extend(&a.guard_uses);
                }
                self.op(cur, &uses, &[]);
                let mut ends = Vec::new();
                for a in arms {
                    let bb = self.new_block();
                    self.edge(cur, bb);
                    self.op(bb, &[], &a.vars);
                    ends.push(self.block(&a.body, bb, body));
                }
                self.join(ends)
            }
            Stmt::Loop {
                label,
                kind,
                body: b,
                ..
            } => {
                if let LoopKind::For { cursor, uses, .. } = kind {
                    self.op(cur, uses, &[*cursor]);
                }
                let head = self.new_block();
                self.edge(cur, head);
                let exit = self.new_block();
                let body_bb = match kind {
                    LoopKind::Loop => head,
                    LoopKind::While { uses, .. } => {
                        self.op(head, uses, &[]);
                        self.edge(head, exit);
                        let bb = self.new_block();
                        self.edge(head, bb);
                        bb
                    }
                    LoopKind::WhileLet { uses, vars, .. } => {
                        self.op(head, uses, &[]);
                        self.edge(head, exit);
                        let bb = self.new_block();
                        self.edge(head, bb);
                        self.op(bb, &[], vars);
                        bb
                    }
                    LoopKind::For { cursor, vars, .. } => {
                        self.op(head, &[*cursor], &[]);
                        self.edge(head, exit);
                        let bb = self.new_block();
                        self.edge(head, bb);
                        self.op(bb, &[], vars);
                        bb
                    }
                };
                self.targets.push(Target {
                    label: label.map(|l| l.name.ident.to_string()),
                    head,
                    exit,
                    is_loop: true,
                });
                let end = self.block(b, body_bb, body);
                self.targets.pop();
                if let Some(end) = end {
                    self.edge(end, head);
                }
                Some(exit)
            }
            Stmt::Block { label, block } => match label {
                Some(l) => {
                    let exit = self.new_block();
                    self.targets.push(Target {
                        label: Some(l.name.ident.to_string()),
                        head: exit,
                        exit,
                        is_loop: false,
                    });
                    let end = self.block(block, cur, body);
                    self.targets.pop();
                    if let Some(end) = end {
                        self.edge(end, exit);
                    }
                    Some(exit)
                }
                None => self.block(block, cur, body),
            },
            Stmt::Value(r) => {
                match r {
                    Returned::Expr { uses, .. } => self.op(cur, uses, &[]),
                    Returned::Temp(t) => self.op(cur, &[*t], &[]),
                }
                Some(cur)
            }
            Stmt::Bind { vars, value, .. } => {
                let end = self.stmt(value, cur, body)?;
                self.op(end, &[], vars);
                Some(end)
            }
            Stmt::Return(r, _) => {
                match r {
                    Returned::Expr { uses, .. } => self.op(cur, uses, &[]),
                    Returned::Temp(t) => self.op(cur, &[*t], &[]),
                }
                self.blocks[cur].returns = true;
                None
            }
        }
    }

    fn join(&mut self, ends: impl IntoIterator<Item = Option<BbId>>) -> Option<BbId> {
        let ends: Vec<BbId> = ends.into_iter().flatten().collect();
        if ends.is_empty() {
            return None;
        }
        let j = self.new_block();
        for e in ends {
            self.edge(e, j);
        }
        Some(j)
    }
}
