//! Expansion snapshots of every `ui-tests` pass case, and their Mermaid diagrams.
//!
//! Each pass case's `#[workflow]` / `#[activity]` items are expanded here and the
//! pretty-printed result is an insta snapshot (review every `.snap` change). The
//! diagram of each workflow is checked in under `ui-tests/diagrams/`, where the
//! Mermaid check (`ui-tests/mermaid/check.mjs`, run by CI) parses it; set
//! `SAGA_BLESS=1` to rewrite them.

use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

pub(crate) fn pretty(tokens: TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(e) => panic!("expansion does not parse ({e}):\n{tokens}"),
    }
}

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui-tests")
}

/// Expands every macro item of a source file: `(pretty expansion, [(workflow, diagram)])`.
fn expand_file(source: &str) -> (String, Vec<(String, String)>) {
    let file = syn::parse_file(source).expect("the pass case parses");
    let mut out = TokenStream::new();
    let mut diagrams = Vec::new();
    for item in file.items {
        let syn::Item::Fn(mut f) = item else { continue };
        let Some(pos) = f
            .attrs
            .iter()
            .position(|a| a.path().is_ident("workflow") || a.path().is_ident("activity"))
        else {
            continue;
        };
        let attr = f.attrs.remove(pos);
        let args = match &attr.meta {
            syn::Meta::List(l) => l.tokens.clone(),
            _ => TokenStream::new(),
        };
        let expanded = if attr.path().is_ident("workflow") {
            let e = super::expand(args, f.to_token_stream());
            if let Some(d) = diagram_of(&e) {
                diagrams.push((crate::names::unraw(&f.sig.ident), d));
            }
            e
        } else {
            crate::activity::expand(args, f.to_token_stream())
        };
        out.extend(expanded);
    }
    (pretty(out), diagrams)
}

/// The string `fn diagram()` returns in an expansion.
fn diagram_of(tokens: &TokenStream) -> Option<String> {
    let file: syn::File = syn::parse2(tokens.clone()).ok()?;
    for item in file.items {
        let syn::Item::Const(c) = item else { continue };
        let syn::Expr::Block(b) = *c.expr else {
            continue;
        };
        for stmt in b.block.stmts {
            let syn::Stmt::Item(syn::Item::Impl(imp)) = stmt else {
                continue;
            };
            for it in imp.items {
                let syn::ImplItem::Fn(f) = it else { continue };
                if f.sig.ident != "diagram" {
                    continue;
                }
                if let Some(syn::Stmt::Expr(syn::Expr::Lit(l), None)) = f.block.stmts.first() {
                    if let syn::Lit::Str(s) = &l.lit {
                        return Some(s.value());
                    }
                }
            }
        }
    }
    None
}

#[test]
fn pass_cases_expand_as_snapshotted() {
    let dir = ui_dir().join("tests/ui/pass");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the pass cases")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "only {} pass cases", cases.len());
    let bless = std::env::var_os("SAGA_BLESS").is_some();
    let diagram_dir = ui_dir().join("diagrams");
    let mut stale = Vec::new();
    for case in cases {
        let name = case
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let source = std::fs::read_to_string(&case).expect("the case reads");
        let (expansion, diagrams) = expand_file(&source);
        insta::assert_snapshot!(format!("pass_{name}"), expansion);
        for (workflow, diagram) in diagrams {
            let path = diagram_dir.join(format!("{name}__{workflow}.mmd"));
            if bless {
                std::fs::create_dir_all(&diagram_dir).expect("the diagram folder");
                std::fs::write(&path, &diagram).expect("the diagram writes");
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(diagram.as_str()) {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "diagrams missing or out of date (rerun with SAGA_BLESS=1 and review): {stale:#?}"
    );
}

fn errors_of(tokens: TokenStream) -> Vec<String> {
    let text = tokens.to_string();
    text.match_indices("compile_error !")
        .map(|(i, _)| {
            let rest = &text[i..];
            let start = rest.find('"').map_or(0, |s| s + 1);
            let end = rest[start..].find("\" }").map_or(rest.len(), |e| start + e);
            rest[start..end].to_owned()
        })
        .collect()
}

#[test]
fn every_error_is_reported_in_one_expansion() {
    let out = super::expand(
        quote!(),
        quote! {
            async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
                let t = std::time::SystemTime::now();
                println!("{t:?}");
                let v = foo(ctx.activity(double, n).await?);
                Ok(v)
            }
        },
    );
    let errors = errors_of(out.clone());
    assert_eq!(errors.len(), 3, "{errors:#?}");
    // The fallback keeps the handle and a stub impl, so uses of it do not cascade.
    let text = out.to_string();
    assert!(text.contains("struct flow"), "{text}");
    assert!(text.contains("type State = ()"), "{text}");
}

#[test]
fn stored_bindings_are_exactly_the_live_ones() {
    let out = pretty(super::expand(
        quote!(),
        quote! {
            async fn flow(ctx: &mut WorkflowContext, order: Order) -> Result<u64, SagaError> {
                let dead: u64 = 1;
                let a = ctx.activity(first, order.clone()).await?;
                let b = ctx.activity(second, dead).await?;
                let c = ctx.activity(third, a).await?;
                Ok(b + c)
            }
        },
    ));
    let state = &out[out.find("enum FlowState").expect("the state enum")..];
    let state = &state[..state.find("Finished").expect("the last variant")];
    // Before `first`: `order` (used by nothing after it) is dropped at the transition.
    assert!(
        state.contains("First {\n        /// `dead`\n        dead: u64,\n    }"),
        "{state}"
    );
    assert!(state.contains("Second {\n        /// `a`"), "{state}");
    assert!(
        !state.contains("order: Order,\n    },\n    /// Waits for `ctx.activity(second"),
        "{state}"
    );
}

#[test]
fn liveness_follows_loop_back_edges() {
    let out = pretty(super::expand(
        quote!(),
        quote! {
            async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> {
                let mut i: u64 = 0;
                let total: u64 = 5;
                loop {
                    if i == n { break; }
                    i = ctx.activity(step, i).await?;
                }
                Ok(total)
            }
        },
    ));
    // `total` is only used after the loop, `n` only at its head: both are live at
    // the checkpoint inside the loop through the back-edge.
    let step = &out[out.find("    Step {").expect("the Step variant")..];
    let step = &step[..step.find("},").expect("its end")];
    for field in ["n: u64", "i: u64", "total: u64"] {
        assert!(step.contains(field), "`{field}` missing in {step}");
    }
}

fn fingerprint_of(body: TokenStream) -> String {
    let text = super::expand(
        quote!(),
        quote!(async fn flow(ctx: &mut WorkflowContext, n: u64) -> Result<u64, SagaError> #body),
    )
    .to_string();
    let at = text.find("FINGERPRINT").expect("a fingerprint");
    let rest = &text[at..];
    let start = rest.find('"').expect("its value") + 1;
    rest[start..start + rest[start..].find('"').expect("its end")].to_owned()
}

#[test]
fn fingerprint_tracks_the_lowered_machine() {
    let base = fingerprint_of(quote!({
        let a = ctx.activity(first, n).await?;
        let b = ctx.activity(second, a).await?;
        Ok(b)
    }));
    assert!(base.starts_with("flow:"), "{base}");
    // Plain code that changes nothing stored or awaited keeps it.
    let same = fingerprint_of(quote!({
        let a = ctx.activity(first, n + 0).await?;
        let b = ctx.activity(second, a).await?;
        Ok(b * 1)
    }));
    assert_eq!(base, same);
    // Reordering the checkpoints, or storing another local, changes it.
    let reordered = fingerprint_of(quote!({
        let a = ctx.activity(second, n).await?;
        let b = ctx.activity(first, a).await?;
        Ok(b)
    }));
    assert_ne!(base, reordered);
    let more_state = fingerprint_of(quote!({
        let a = ctx.activity(first, n).await?;
        let b = ctx.activity(second, a).await?;
        Ok(b + n)
    }));
    assert_ne!(base, more_state);
}
