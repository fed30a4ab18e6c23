//! NATS names: what may go into a subject token, stream or consumer name, and how an
//! arbitrary saga id is made into one token.
//!
//! A subject is dot-separated tokens, where `*` and `>` are wildcards and whitespace
//! ends the subject; a stream or consumer name also becomes a file name on the server.
//! We allow only `[A-Za-z0-9_-]` in names we build, which is safe everywhere.

use saga_runtime::{Error, ErrorKind, Result};

/// The longest queue name: it becomes part of a consumer name, a file name on the server.
pub(crate) const MAX_QUEUE_LEN: usize = 128;

fn is_safe_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// A stream or consumer name we accept: 1 to 64 safe characters.
pub(crate) fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(is_safe_byte)
}

/// One subject token of safe characters.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_safe_byte)
}

/// A subject prefix: one or more safe tokens joined by dots.
pub(crate) fn is_prefix(s: &str) -> bool {
    s.split('.').all(is_token)
}

/// True if one prefix is the other or covers it (`a` and `a.b`).
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    long == short || long.starts_with(&format!("{short}."))
}

/// Checks a task queue name: it becomes a subject token and part of a consumer name.
pub(crate) fn check_queue(queue: &str) -> Result<()> {
    if is_token(queue) && queue.len() <= MAX_QUEUE_LEN {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Validation,
            format!(
                "invalid task queue name for NATS: use 1 to {MAX_QUEUE_LEN} letters, digits, `_` or `-`"
            ),
        )
        .with("queue", format!("{queue:?}")))
    }
}

/// Makes any text one subject token, injectively: safe characters stay, every other
/// byte (and `~`, the escape itself, is not safe) becomes `~XX` in upper-case hex.
/// `order-42` stays `order-42`; `order 42.a` becomes `order~2042~2Ea`.
pub(crate) fn escape_token(s: &str) -> String {
    use std::fmt::Write;
    if s.is_empty() {
        // An empty token is not a valid subject; `~` alone never comes out of escaping
        // a non-empty string (every `~` it emits is followed by two hex digits).
        return "~".to_owned();
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if is_safe_byte(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "~{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_a_safe_token_and_injective() {
        let ids = [
            "order-42",
            "order 42.a",
            "a~20",
            "a ",
            "*",
            ">",
            "",
            "~",
            "é",
        ];
        let escaped: Vec<String> = ids.iter().map(|s| escape_token(s)).collect();
        for e in &escaped {
            assert!(e.bytes().all(|b| is_safe_byte(b) || b == b'~'), "{e}");
        }
        let distinct: std::collections::HashSet<&String> = escaped.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{escaped:?}");
        assert_eq!(escape_token("order-42"), "order-42");
        assert_eq!(escape_token("order 42.a"), "order~2042~2Ea");
    }

    #[test]
    fn queue_names() {
        check_queue("payments_eu-1").unwrap();
        for bad in [
            "",
            "a.b",
            "a b",
            "*",
            ">",
            "a\n",
            &"q".repeat(MAX_QUEUE_LEN + 1),
        ] {
            let err = check_queue(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Validation, "{bad:?}");
        }
    }

    #[test]
    fn prefixes() {
        assert!(is_prefix("saga.tasks"));
        assert!(!is_prefix("saga..tasks"));
        assert!(!is_prefix("saga.>"));
        assert!(overlaps("saga", "saga.tasks"));
        assert!(overlaps("saga.tasks", "saga.tasks"));
        assert!(!overlaps("saga.tasks", "saga.tasksx"));
        assert!(!overlaps("saga.tasks", "saga.dlq"));
    }
}
