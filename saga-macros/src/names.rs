//! Names derived from the user's identifiers: type ids, state enum and variant names.

use heck::{ToKebabCase, ToUpperCamelCase};

/// `reserve_inventory` → `reserve-inventory` (the default `TYPE_ID`).
pub(crate) fn type_id(ident: &syn::Ident) -> String {
    unraw(ident).to_kebab_case()
}

/// `order_saga` → `OrderSaga`; `"approval"` → `Approval`. Empty or non-identifier
/// text gives `fallback`.
pub(crate) fn camel(text: &str, fallback: &str) -> String {
    let c = text.to_upper_camel_case();
    let c: String = c
        .chars()
        .filter(|ch| ch.is_alphanumeric() || *ch == '_')
        .collect();
    match c.chars().next() {
        Some(first) if first.is_alphabetic() => c,
        Some(_) => format!("{fallback}{c}"),
        None => fallback.to_owned(),
    }
}

/// The identifier's text without a `r#` prefix.
pub(crate) fn unraw(ident: &syn::Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map(str::to_owned).unwrap_or(s)
}

/// Parses a duration literal: `"30s"`, `"500ms"`, `"5m"`, `"1h30m"`, `"2d"`.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let mut total_ms: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!("expected a number at `{rest}`"));
        }
        let n: u128 = rest[..digits].parse().map_err(|e| format!("{e}"))?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let ms = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("`{n}` needs a unit (ms, s, m, h, d)")),
            other => return Err(format!("unknown unit `{other}` (ms, s, m, h, d)")),
        };
        total_ms += n * ms;
    }
    u64::try_from(total_ms)
        .map(std::time::Duration::from_millis)
        .map_err(|_| "duration too large".into())
}

/// The longest task queue name: as long as the NATS task queue accepts (the name
/// becomes a subject token and part of a consumer name there).
const MAX_QUEUE_LEN: usize = 128;

/// Checks a task queue name literal: 1 to 128 letters, digits, `_` or `-`, what every
/// task queue adapter accepts, so that a bad name fails at compile time rather than
/// at the first publish.
pub(crate) fn check_queue(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > MAX_QUEUE_LEN {
        return Err(format!("a name has 1 to {MAX_QUEUE_LEN} characters"));
    }
    match text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        Some(bad) => Err(format!(
            "`{bad}` is not allowed: use letters, digits, `_` or `-`"
        )),
        None => Ok(()),
    }
}

/// Parses `task_queue = "<name>"` (the `meta` of `#[workflow]` or `#[activity]`):
/// the literal, or `None` with the error reported to `cx` when the name is invalid;
/// `example` is the name the error suggests.
pub(crate) fn task_queue_arg(
    cx: &crate::ctxt::Ctxt,
    meta: &syn::meta::ParseNestedMeta<'_>,
    example: &str,
) -> syn::Result<Option<syn::LitStr>> {
    let lit: syn::LitStr = meta.value()?.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("expected a queue name string, e.g. `task_queue = \"{example}\"`"),
        )
    })?;
    match check_queue(&lit.value()) {
        Ok(()) => Ok(Some(lit)),
        Err(why) => {
            cx.error_spanned_by(
                &lit,
                format!(
                    "invalid task queue name `{}`: {why}; e.g. `task_queue = \"{example}\"`",
                    lit.value()
                ),
            );
            Ok(None)
        }
    }
}

/// A parsed duration as the expression `Option<Duration>` in generated code.
pub(crate) fn duration_tokens(d: Option<std::time::Duration>) -> proc_macro2::TokenStream {
    match d {
        Some(d) => {
            let ms = d.as_millis() as u64;
            quote::quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms)))
        }
        None => quote::quote!(::core::option::Option::None),
    }
}

/// A checked queue name as the expression `Option<String>` in generated code.
pub(crate) fn queue_tokens(q: Option<&syn::LitStr>) -> proc_macro2::TokenStream {
    match q {
        Some(q) => quote::quote!(::core::option::Option::Some(::std::string::String::from(#q))),
        None => quote::quote!(::core::option::Option::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn queue_names() {
        assert_eq!(check_queue("payments"), Ok(()));
        assert_eq!(check_queue("gpu_workers-2"), Ok(()));
        assert!(check_queue("").is_err());
        assert!(check_queue("pay.ments").unwrap_err().contains("`.`"));
        assert!(check_queue("pay ments").is_err());
        assert!(check_queue(&"q".repeat(129)).is_err());
        assert_eq!(check_queue(&"q".repeat(128)), Ok(()));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn case_conversions() {
        let id: syn::Ident = syn::parse_quote!(r#reserve_inventory);
        assert_eq!(type_id(&id), "reserve-inventory");
        assert_eq!(camel("charge_payment", "X"), "ChargePayment");
        assert_eq!(camel("order.approved", "Signal"), "OrderApproved");
        assert_eq!(camel("42", "Signal"), "Signal42");
        assert_eq!(camel("", "Signal"), "Signal");
    }
}
