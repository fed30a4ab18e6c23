//! The Mermaid `stateDiagram-v2` of the lowered machine.
//!
//! One state per variant; an edge from each resume point to every checkpoint its
//! segment can reach before suspending again (CFG reachability), to `[*]` where it
//! returns, and to `Failed` where a `?` on the woken value can fail. A failure runs
//! the compensations of the completed steps, last-in first-out (runtime policy):
//! `Failed --> Compensating --> [*]`.
//!
//! ```text
//! stateDiagram-v2
//!     [*] --> Start
//!     Start --> ReserveInventory
//!     ReserveInventory: activity reserve_inventory (line 12)
//!     ReserveInventory --> ChargePayment
//!     ReserveInventory --> Failed: error
//!     ...
//! ```

use std::fmt::Write;

use super::ir::Body;
use super::liveness::edges_from;
use super::lower::Cfg;

pub(crate) fn mermaid(body: &Body<'_>, cfg: &Cfg, variants: &[syn::Ident]) -> String {
    let mut out = String::from("stateDiagram-v2\n    [*] --> Start\n");
    let mut any_fail = false;
    let mut emit = |out: &mut String, from: &str, bb: usize| {
        let e = edges_from(cfg, bb);
        for cp in &e.to {
            let _ = writeln!(out, "    {from} --> {}", variants[*cp]);
        }
        if e.returns {
            let _ = writeln!(out, "    {from} --> [*]: return");
        }
        if e.fails {
            any_fail = true;
            let _ = writeln!(out, "    {from} --> Failed: error");
        }
    };
    emit(&mut out, "Start", cfg.entry);
    for (i, cp) in body.checkpoints.iter().enumerate() {
        let v = variants[i].to_string();
        let what = label(&format!(
            "{} {} (line {})",
            kind_text(cp.kind.kind_name()),
            cp.kind.awaits(),
            cp.line
        ));
        let _ = writeln!(out, "    {v}: {what}");
        emit(&mut out, &v, cfg.resume[i]);
    }
    if any_fail {
        out.push_str("    Failed --> Compensating: undo completed steps, last first\n");
        out.push_str("    Compensating --> [*]\n");
    }
    out
}

fn kind_text(kind: &str) -> &'static str {
    match kind {
        "Activity" => "activity",
        "LocalActivity" => "local activity",
        "Child" => "child workflow",
        "Sleep" => "sleep",
        "Signal" => "signal",
        "Join" => "join",
        _ => "join all",
    }
}

/// Keeps label text inside what Mermaid reads as plain text.
fn label(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || " _-.,()[]".contains(c) {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
