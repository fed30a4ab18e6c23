//! Phase 4: liveness by backward fixpoint over the CFG (loop back-edges included).
//!
//! `live_in(b) = uses(b) ∪ (live_out(b) − defs(b))`, `live_out(b) = ∪ live_in(succ)`,
//! iterated until nothing changes. A checkpoint's variant stores exactly the bindings
//! live where its resume block starts (after the woken value is bound, which kills
//! the bound names); everything else is dropped at the transition. Like rustc's
//! `locals_live_across_suspend_points`.
//!
//! ```text
//! let order = input;                         live at cp0: {order}
//! let r = ctx.activity(reserve, order.clone()).await?;   // cp0
//! let p = ctx.activity(charge, order.amount).await?;     // cp1: {r}
//! Ok((r, p))
//! ```

use std::collections::BTreeSet;

use super::ir::{CpId, VarId};
use super::lower::Cfg;

/// The bindings stored in each variant.
#[derive(Debug)]
pub(crate) struct Liveness {
    /// Live at the start of the body (a subset of the input parameter).
    pub(crate) start: BTreeSet<VarId>,
    /// Per checkpoint: live after it wakes.
    pub(crate) at: Vec<BTreeSet<VarId>>,
}

pub(crate) fn analyze(cfg: &Cfg) -> Liveness {
    let n = cfg.blocks.len();
    let mut live_in: Vec<BTreeSet<VarId>> = vec![BTreeSet::new(); n];
    loop {
        let mut changed = false;
        for b in (0..n).rev() {
            let mut live: BTreeSet<VarId> = cfg.blocks[b]
                .succs
                .iter()
                .flat_map(|s| live_in[*s].iter().copied())
                .collect();
            for op in cfg.blocks[b].ops.iter().rev() {
                for d in &op.defs {
                    live.remove(d);
                }
                live.extend(op.uses.iter().copied());
            }
            if live != live_in[b] {
                live_in[b] = live;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    Liveness {
        start: live_in[cfg.entry].clone(),
        at: cfg
            .resume
            .iter()
            .map(|r: &usize| live_in[*r].clone())
            .collect::<Vec<_>>(),
    }
}

/// The checkpoints a segment starting at `from` can reach before suspending again,
/// and whether it can return or fail: the diagram's edges.
pub(crate) struct Edges {
    pub(crate) to: Vec<CpId>,
    pub(crate) returns: bool,
    pub(crate) fails: bool,
}

pub(crate) fn edges_from(cfg: &Cfg, from: usize) -> Edges {
    let mut seen = vec![false; cfg.blocks.len()];
    let mut stack = vec![from];
    let mut out = Edges {
        to: Vec::new(),
        returns: false,
        fails: false,
    };
    while let Some(b) = stack.pop() {
        if std::mem::replace(&mut seen[b], true) {
            continue;
        }
        let block = &cfg.blocks[b];
        out.returns |= block.returns;
        out.fails |= block.fails;
        if let Some(cp) = block.suspends {
            if !out.to.contains(&cp) {
                out.to.push(cp);
            }
            continue;
        }
        stack.extend(block.succs.iter().copied());
    }
    out.to.sort_unstable();
    out
}
