//! Phase 2: determinism checks (DESIGN.md section 4, the table).
//!
//! A workflow's code runs again on replay and must take the same decisions: anything
//! that reads the clock, randomness, the environment or the outside world, or that
//! depends on iteration order or threads, is a compile error with the deterministic
//! replacement. Paths are matched by suffix (`std::time::SystemTime::now` and
//! `SystemTime::now` both hit) after resolving `use .. as ..` aliases declared in the
//! body. `ctx.side_effect(|| ..)` records its closure's result, so the closure is not
//! checked; neither is a statement marked `#[nondeterministic(reason = "..")]`.
//!
//! The pass cannot see into helper fns: `#[deterministic]` applies it to one.

use std::collections::BTreeMap;

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;
use syn::visit_mut::VisitMut;

use crate::ctxt::Ctxt;

/// One banned family and its replacement.
struct Rule {
    what: &'static str,
    fix: &'static str,
}

const TIME: Rule = Rule {
    what: "reads the wall clock",
    fix: "use `ctx.now()` (the time of the recorded event)",
};
const RANDOM: Rule = Rule {
    what: "is random",
    fix: "use `ctx.random()` (recorded, identical on replay)",
};
const UUID: Rule = Rule {
    what: "is random",
    fix: "use `ctx.uuid()` (recorded, identical on replay)",
};
const SLEEP: Rule = Rule {
    what: "waits on a timer the engine does not record",
    fix: "use `ctx.sleep(d).await` (a durable timer)",
};
const SPAWN: Rule = Rule {
    what: "runs concurrently outside the engine",
    fix: "use `ctx.join(..)` / `ctx.join_all(..)` for parallel steps, `ctx.signal(..)` to receive messages",
};
const ENV: Rule = Rule {
    what: "reads the process environment",
    fix: "pass the value in the workflow input, or read it in an activity",
};
const IO: Rule = Rule {
    what: "does I/O",
    fix: "do I/O in an activity",
};
const PRINT: Rule = Rule {
    what: "writes to the console on every replay",
    fix: "use the `tracing` macros",
};
const HASH: Rule = Rule {
    what: "iterates in a random order",
    fix: "use `BTreeMap` / `BTreeSet`",
};
const UNSAFE: Rule = Rule {
    what: "escapes the workflow state",
    fix: "keep data in the workflow's locals (they are its durable state)",
};

/// Matches a resolved path against the table.
fn rule_for(segments: &[String]) -> Option<&'static Rule> {
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let ends = |suffix: &[&str]| s.len() >= suffix.len() && s[s.len() - suffix.len()..] == *suffix;
    let module = |m: &str| s[..s.len().saturating_sub(1)].contains(&m);
    let first = s.first().copied().unwrap_or_default();
    if ends(&["SystemTime", "now"])
        || ends(&["Instant", "now"])
        || ends(&["Utc", "now"])
        || ends(&["Local", "now"])
        || ends(&["OffsetDateTime", "now_utc"])
        || ends(&["Timestamp", "now"])
    {
        return Some(&TIME);
    }
    if first == "rand"
        || first == "fastrand"
        || first == "getrandom"
        || ends(&["thread_rng"])
        || ends(&["OsRng"])
        || ends(&["getrandom"])
        || ends(&["RandomState", "new"])
    {
        return Some(&RANDOM);
    }
    if ends(&["Uuid", "new_v4"]) || ends(&["Uuid", "now_v7"]) || ends(&["Ulid", "new"]) {
        return Some(&UUID);
    }
    if ends(&["thread", "sleep"])
        || ends(&["time", "sleep"])
        || ends(&["time", "interval"])
        || ends(&["time", "timeout"])
    {
        return Some(&SLEEP);
    }
    if ends(&["tokio", "spawn"])
        || ends(&["task", "spawn"])
        || ends(&["spawn_blocking"])
        || ends(&["thread", "spawn"])
        || module("mpsc")
        || module("oneshot")
        || module("broadcast")
        || ends(&["watch", "channel"])
    {
        return Some(&SPAWN);
    }
    if module("env") || module("process") {
        return Some(&ENV);
    }
    if module("fs")
        || module("net")
        || first == "reqwest"
        || first == "sqlx"
        || first == "async_nats"
        || ends(&["io", "stdin"])
        || ends(&["io", "stdout"])
        || ends(&["io", "stderr"])
        || ends(&["stdin"])
        || ends(&["stdout"])
    {
        return Some(&IO);
    }
    if s.contains(&"HashMap") || s.contains(&"HashSet") {
        return Some(&HASH);
    }
    None
}

fn macro_rule(name: &str) -> Option<&'static Rule> {
    match name {
        "println" | "eprintln" | "print" | "eprint" | "dbg" => Some(&PRINT),
        "select" | "join" => Some(&SPAWN),
        "thread_local" => Some(&UNSAFE),
        _ => None,
    }
}

/// Runs the checks over a workflow body (`ctx`: the context's name, whose
/// `side_effect` closures are exempt).
pub(crate) fn check(cx: &Ctxt, block: &syn::Block, ctx: Option<&syn::Ident>) {
    let mut v = Checker {
        cx,
        ctx: ctx.map(ToString::to_string),
        aliases: BTreeMap::new(),
    };
    v.visit_block(block);
}

struct Checker<'c> {
    cx: &'c Ctxt,
    ctx: Option<String>,
    /// `use a::b as c;` in the body: `c` → `a::b`.
    aliases: BTreeMap<String, Vec<String>>,
}

impl Checker<'_> {
    fn path(&self, path: &syn::Path) {
        let mut segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some(full) = segments.first().and_then(|f| self.aliases.get(f)) {
            let mut resolved = full.clone();
            resolved.extend(segments.drain(1..));
            segments = resolved;
        }
        if let Some(rule) = rule_for(&segments) {
            let written: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            let written = written.join("::");
            self.cx.error_spanned_by(
                path,
                format!(
                    "`{written}` {} and is non-deterministic in a workflow; {}",
                    rule.what, rule.fix
                ),
            );
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut full = prefix.clone();
                full.push(n.ident.to_string());
                self.aliases.insert(n.ident.to_string(), full);
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix.clone();
                full.push(r.ident.to_string());
                self.aliases.insert(r.rename.to_string(), full);
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
            syn::UseTree::Glob(_) => {}
        }
    }

    /// True (and checked) if the statement carries the escape hatch.
    fn escape_hatch(&self, attrs: &[syn::Attribute]) -> bool {
        let Some(attr) = attrs.iter().find(|a| a.path().is_ident("nondeterministic")) else {
            return false;
        };
        let mut reason = None;
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("reason") {
                let lit: syn::LitStr = meta.value()?.parse()?;
                reason = Some(lit.value());
                Ok(())
            } else {
                Err(meta.error("expected `reason = \"..\"`"))
            }
        });
        if parsed.is_err() || reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            self.cx.error_spanned_by(
                attr,
                "`#[nondeterministic]` needs a reason: `#[nondeterministic(reason = \"why this is safe on replay\")]`",
            );
        }
        true
    }

    fn is_side_effect(&self, mc: &syn::ExprMethodCall) -> bool {
        let Some(ctx) = &self.ctx else { return false };
        mc.method == "side_effect"
            && matches!(&*mc.receiver, syn::Expr::Path(p) if p.path.is_ident(ctx))
    }

    fn macro_tokens(&self, tokens: TokenStream) {
        // Macro arguments are not parsed; look for `path::to::call` runs in them.
        let mut run: Vec<proc_macro2::Ident> = Vec::new();
        let mut tts = tokens.into_iter().peekable();
        let flush = |run: &mut Vec<proc_macro2::Ident>| {
            if run.len() > 1 {
                let path: syn::Path = syn::parse_quote!(#(#run)::*);
                self.path(&path);
            }
            run.clear();
        };
        while let Some(tt) = tts.next() {
            match tt {
                TokenTree::Ident(i) => {
                    run.push(i);
                    let is_sep =
                        matches!(tts.peek(), Some(TokenTree::Punct(p)) if p.as_char() == ':');
                    if is_sep {
                        tts.next();
                        tts.next();
                    } else {
                        flush(&mut run);
                    }
                }
                TokenTree::Group(g) => {
                    flush(&mut run);
                    self.macro_tokens(g.stream());
                }
                _ => flush(&mut run),
            }
        }
        flush(&mut run);
    }
}

impl<'ast> Visit<'ast> for Checker<'_> {
    fn visit_stmt(&mut self, s: &'ast syn::Stmt) {
        let attrs = match s {
            syn::Stmt::Local(l) => &l.attrs[..],
            syn::Stmt::Expr(e, _) => expr_attrs(e),
            syn::Stmt::Macro(m) => &m.attrs[..],
            syn::Stmt::Item(_) => &[],
        };
        if self.escape_hatch(attrs) {
            return;
        }
        if let syn::Stmt::Item(syn::Item::Use(u)) = s {
            self.use_tree(&mut Vec::new(), &u.tree);
            return;
        }
        syn::visit::visit_stmt(self, s);
    }
    fn visit_path(&mut self, p: &'ast syn::Path) {
        self.path(p);
        syn::visit::visit_path(self, p);
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        let name = m
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default();
        if let Some(rule) = macro_rule(&name) {
            self.cx.error_spanned_by(
                &m.path,
                format!(
                    "`{name}!` {} and is non-deterministic in a workflow; {}",
                    rule.what, rule.fix
                ),
            );
        } else {
            self.path(&m.path);
        }
        self.macro_tokens(m.tokens.clone());
    }
    fn visit_expr_unsafe(&mut self, e: &'ast syn::ExprUnsafe) {
        self.cx.error_spanned_by(
            e.unsafe_token,
            format!(
                "`unsafe` {} and is not allowed in a workflow; {}",
                UNSAFE.what, UNSAFE.fix
            ),
        );
        syn::visit::visit_expr_unsafe(self, e);
    }
    fn visit_item_static(&mut self, s: &'ast syn::ItemStatic) {
        if let syn::StaticMutability::Mut(m) = &s.mutability {
            self.cx.error_spanned_by(
                m,
                format!(
                    "`static mut` {} and is not allowed in a workflow; {}",
                    UNSAFE.what, UNSAFE.fix
                ),
            );
        }
        syn::visit::visit_item_static(self, s);
    }
    fn visit_expr_method_call(&mut self, mc: &'ast syn::ExprMethodCall) {
        if self.is_side_effect(mc) {
            // Recorded: its closure runs once and its value is replayed.
            self.visit_expr(&mc.receiver);
            return;
        }
        syn::visit::visit_expr_method_call(self, mc);
    }
}

fn expr_attrs(e: &syn::Expr) -> &[syn::Attribute] {
    match e {
        syn::Expr::Call(c) => &c.attrs,
        syn::Expr::MethodCall(c) => &c.attrs,
        syn::Expr::Assign(c) => &c.attrs,
        syn::Expr::Macro(c) => &c.attrs,
        syn::Expr::Block(c) => &c.attrs,
        syn::Expr::If(c) => &c.attrs,
        syn::Expr::Match(c) => &c.attrs,
        syn::Expr::Binary(c) => &c.attrs,
        syn::Expr::Path(c) => &c.attrs,
        _ => &[],
    }
}

/// Removes `#[nondeterministic(..)]` (ours, not rustc's) from a statement.
pub(crate) struct StripEscapeHatch;

impl VisitMut for StripEscapeHatch {
    fn visit_attributes_mut(&mut self, attrs: &mut Vec<syn::Attribute>) {
        attrs.retain(|a| !a.path().is_ident("nondeterministic"));
    }
    fn visit_local_mut(&mut self, l: &mut syn::Local) {
        l.attrs.retain(|a| !a.path().is_ident("nondeterministic"));
        syn::visit_mut::visit_local_mut(self, l);
    }
    fn visit_expr_mut(&mut self, e: &mut syn::Expr) {
        if let Some(attrs) = expr_attrs_mut(e) {
            attrs.retain(|a| !a.path().is_ident("nondeterministic"));
        }
        syn::visit_mut::visit_expr_mut(self, e);
    }
    fn visit_stmt_macro_mut(&mut self, m: &mut syn::StmtMacro) {
        m.attrs.retain(|a| !a.path().is_ident("nondeterministic"));
    }
}

fn expr_attrs_mut(e: &mut syn::Expr) -> Option<&mut Vec<syn::Attribute>> {
    Some(match e {
        syn::Expr::Call(c) => &mut c.attrs,
        syn::Expr::MethodCall(c) => &mut c.attrs,
        syn::Expr::Assign(c) => &mut c.attrs,
        syn::Expr::Macro(c) => &mut c.attrs,
        syn::Expr::Block(c) => &mut c.attrs,
        syn::Expr::If(c) => &mut c.attrs,
        syn::Expr::Match(c) => &mut c.attrs,
        syn::Expr::Binary(c) => &mut c.attrs,
        syn::Expr::Path(c) => &mut c.attrs,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(body: syn::Block) -> Vec<String> {
        let cx = Ctxt::new();
        let ctx: syn::Ident = syn::parse_quote!(ctx);
        check(&cx, &body, Some(&ctx));
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn reports_every_violation_with_its_fix() {
        let errs = errors(syn::parse_quote!({
            let t = std::time::SystemTime::now();
            let r = rand::random::<u64>();
            println!("{t:?}");
            let m: HashMap<u32, u32> = HashMap::new();
        }));
        assert_eq!(errs.len(), 5, "{errs:#?}");
        assert!(errs[0].contains("use `ctx.now()`"), "{}", errs[0]);
        assert!(errs[1].contains("use `ctx.random()`"), "{}", errs[1]);
        assert!(errs[2].contains("`println!`"), "{}", errs[2]);
    }

    #[test]
    fn resolves_aliases_and_honours_the_escape_hatch() {
        let errs = errors(syn::parse_quote!({
            use std::time::Instant as Clock;
            let a = Clock::now();
            #[nondeterministic(reason = "only logged")]
            let b = std::time::Instant::now();
            let c = ctx.side_effect(|| std::time::SystemTime::now());
        }));
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].contains("`Clock::now`"), "{}", errs[0]);
    }
}
