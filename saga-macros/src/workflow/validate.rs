//! A debug-only validator of the IR and the analysis results. A failure is a bug in
//! saga-macros, never a user error, and says so.

use super::codegen::find;
use super::ir::Body;
use super::types::Field;

pub(crate) fn validate(
    body: &Body<'_>,
    start: &[Field],
    fields: &[Vec<Field>],
    variants: &[syn::Ident],
) {
    if !cfg!(debug_assertions) {
        return;
    }
    for cp in 0..body.checkpoints.len() {
        assert!(
            find(&body.block, cp).is_some(),
            "this is a bug in saga-macros: checkpoint {cp} is not in the IR"
        );
    }
    for f in start {
        assert!(
            Some(f.var) == body.param,
            "this is a bug in saga-macros: `{}` is live at the start but is not the input",
            body.vars[f.var].ident
        );
    }
    for fs in fields {
        for f in fs {
            assert!(
                f.var < body.vars.len(),
                "this is a bug in saga-macros: unknown binding"
            );
        }
    }
    let mut names: Vec<String> = variants.iter().map(ToString::to_string).collect();
    names.sort();
    let n = names.len();
    names.dedup();
    assert_eq!(
        n,
        names.len(),
        "this is a bug in saga-macros: duplicate variant names"
    );
}
