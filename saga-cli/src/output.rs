//! Printing results: aligned tables for people, JSON for programs.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::error::CliError;

/// Writes `text` to stdout, ending with a newline.
pub(crate) fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_all(text.as_bytes())
        .and_then(|()| match text.ends_with('\n') {
            true => Ok(()),
            false => out.write_all(b"\n"),
        })
        .and_then(|()| out.flush());
    match written {
        // The reader went away (`saga list | head`): stop quietly, as Unix tools do.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => Ok(other?),
    }
}

/// `value` as pretty JSON.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map_err(|e| CliError::other(format!("cannot encode the output as JSON: {e}")))
}

/// `value` as one line of JSON.
pub(crate) fn json_line<T: Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    serde_json::to_string(value)
        .map_err(|e| CliError::other(format!("cannot encode the output as JSON: {e}")))
}

/// Rows under `headers`, each column as wide as its widest cell.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.into_iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(cell); // no trailing spaces
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A time as `2026-01-15T10:30:00.123Z`.
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An optional time, `-` when absent.
pub(crate) fn maybe_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), time)
}

/// `text` cut to `max` characters, with `…` when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// An event's attributes on one short line: `key=value` pairs, scalars as they are,
/// objects and arrays as compact JSON, each cut short; nulls left out.
pub(crate) fn short_attributes(attributes: &Value) -> String {
    let Some(map) = attributes.as_object() else {
        return cut(&attributes.to_string(), 100);
    };
    let pairs: Vec<String> = map
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => cut(s, 40),
                other => cut(&other.to_string(), 40),
            };
            format!("{k}={v}")
        })
        .collect();
    cut(&pairs.join(" "), 160)
}

/// A list of names, `-` when empty.
pub(crate) fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_without_trailing_spaces() {
        let t = table(
            &["ID", "STATUS"],
            &[
                vec!["a".into(), "Running".into()],
                vec!["long-id".into(), "-".into()],
            ],
        );
        assert_eq!(t, "ID       STATUS\na        Running\nlong-id  -\n");
    }

    #[test]
    fn short_attributes_are_short_and_skip_nulls() {
        let v = serde_json::json!({"seq": 1, "activity_type": "charge", "timeout_ms": null,
                                   "input": {"id": "x".repeat(100)}});
        let s = short_attributes(&v);
        assert!(s.starts_with("activity_type=charge input={"), "{s}");
        assert!(s.contains("seq=1"), "{s}");
        assert!(!s.contains("timeout_ms"), "{s}");
        assert!(s.chars().count() < 120, "{s}");
    }
}
