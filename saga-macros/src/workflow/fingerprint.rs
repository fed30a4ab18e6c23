//! `FINGERPRINT`: a stable hash of the lowered machine — the variants in order, their
//! field names and types, and each checkpoint's kind, callee and variant. Any change
//! to what is stored, or to what is awaited where, changes it; an execution started
//! under another fingerprint is refused by the engine (never resumed wrongly).
//!
//! ```text
//! workflow order-saga
//! variant Start order: Order;
//! variant ReserveInventory order: Order;
//! variant ChargePayment order: Order; reservation: <reserve_inventory as ..>::Output;
//! checkpoint 0 Activity reserve_inventory true ReserveInventory
//! ...                                   → sha-256 → "order-saga:e897df6a4a67e36b"
//! ```
//!
//! Plain code between checkpoints is not part of it: a change there that stores the
//! same locals and awaits the same things replays the same history.

use quote::ToTokens;
use sha2::{Digest, Sha256};

use super::ir::Body;
use super::types::Field;

pub(crate) fn fingerprint(
    type_id: &str,
    body: &Body<'_>,
    start: &[Field],
    fields: &[Vec<Field>],
    variants: &[syn::Ident],
) -> String {
    let mut text = format!("workflow {type_id}\n");
    let mut variant = |name: &str, fs: &[Field]| {
        text.push_str(&format!("variant {name}"));
        for f in fs {
            text.push_str(&format!(
                " {}: {};",
                body.vars[f.var].ident,
                f.ty.to_token_stream()
            ));
        }
        text.push('\n');
    };
    variant("Start", start);
    for (i, v) in variants.iter().enumerate() {
        variant(&v.to_string(), &fields[i]);
    }
    for (i, cp) in body.checkpoints.iter().enumerate() {
        text.push_str(&format!(
            "checkpoint {i} {} {} {} {}\n",
            cp.kind.kind_name(),
            cp.kind.awaits(),
            cp.tried,
            variants[i]
        ));
    }
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{type_id}:{hex}")
}
