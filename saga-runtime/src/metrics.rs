//! Metrics in the Prometheus text exposition format (version 0.0.4), so that an
//! application embedding the engine can serve them at its own `/metrics`:
//! [`EngineMetrics::to_prometheus`] renders the engine's counters, and
//! [`PrometheusText`] writes any other family in the same format (the `saga serve`
//! command renders its store and task-queue gauges with it).
//!
//! ```
//! use saga_runtime::engine::EngineMetrics;
//! use saga_runtime::metrics::{MetricType, PrometheusText};
//!
//! let engine = EngineMetrics { workflow_tasks: 7, ..EngineMetrics::default() };
//! let mut text = PrometheusText::new();
//! engine.write_prometheus(&mut text);
//! text.family("orders_open", "Orders not yet shipped.", MetricType::Gauge)
//!     .sample("orders_open", &[("region", "eu")], 3.0);
//! let body = text.finish();
//! assert!(body.contains("saga_engine_workflow_tasks_total 7\n"));
//! assert!(body.contains("orders_open{region=\"eu\"} 3\n"));
//! ```

use std::fmt::Write;

use crate::engine::EngineMetrics;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The kind of a metric family (its `# TYPE` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (reset when the process restarts).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl MetricType {
    fn name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
        }
    }
}

/// A text-format document being written: families, each a `# HELP` and a `# TYPE`
/// line followed by its samples.
#[derive(Debug, Default)]
pub struct PrometheusText {
    out: String,
}

impl PrometheusText {
    /// An empty document.
    pub fn new() -> Self {
        PrometheusText::default()
    }

    /// Starts family `name`; its samples follow. `name` must match
    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` (the names are the program's, not its users').
    pub fn family(&mut self, name: &str, help: &str, kind: MetricType) -> &mut Self {
        debug_assert!(is_name(name), "`{name}` is not a Prometheus metric name");
        // HELP text escapes only `\` and line feeds.
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
        self
    }

    /// A sample of the current family; label values may hold anything (execution
    /// types and queue names come from users), label names must be metric-name-like.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                debug_assert!(is_name(key), "`{key}` is not a Prometheus label name");
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
        self
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Label values escape `\`, `"` and line feeds.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

/// Integers without a fraction (counts read as counts); the format's spellings of
/// the special values.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl EngineMetrics {
    /// The counters as `saga_engine_<name>_total` counter families, one per field.
    pub fn write_prometheus(&self, text: &mut PrometheusText) {
        let counters: [(&str, &str, u64); 12] = [
            (
                "saga_engine_workflow_tasks_total",
                "Batches of events appended by the engine (workflow tasks).",
                self.workflow_tasks,
            ),
            (
                "saga_engine_conflicts_total",
                "Optimistic-locking conflicts that were reloaded and retried.",
                self.conflicts,
            ),
            (
                "saga_engine_loads_total",
                "Executions loaded from the store (cache misses: snapshot and replay).",
                self.loads,
            ),
            (
                "saga_engine_corrupt_snapshots_total",
                "Snapshots that failed their checksum or did not decode.",
                self.corrupt_snapshots,
            ),
            (
                "saga_engine_snapshots_saved_total",
                "Snapshots written.",
                self.snapshots_saved,
            ),
            (
                "saga_engine_activity_attempts_total",
                "Activity attempts executed by this engine's workers.",
                self.activity_attempts,
            ),
            (
                "saga_engine_dropped_tasks_total",
                "Tasks dropped because their result was already in history.",
                self.dropped_tasks,
            ),
            (
                "saga_engine_workflow_task_failures_total",
                "Workflow tasks that failed (replay mismatch, fingerprint, decode).",
                self.workflow_task_failures,
            ),
            (
                "saga_engine_store_errors_total",
                "Calls to the event or timer store that failed.",
                self.store_errors,
            ),
            (
                "saga_engine_outbox_redelivered_total",
                "Outbox tasks the reconciler published again.",
                self.outbox_redelivered,
            ),
            (
                "saga_engine_watchdog_findings_total",
                "Findings of the watchdog's detectors.",
                self.watchdog_findings,
            ),
            (
                "saga_engine_watchdog_actions_total",
                "Actions the watchdog took (forced timeouts, cancelled deadlocks, pauses).",
                self.watchdog_actions,
            ),
        ];
        for (name, help, value) in counters {
            text.family(name, help, MetricType::Counter)
                .sample(name, &[], value as f64);
        }
    }

    /// The counters as a text-format document (see [`Self::write_prometheus`]).
    pub fn to_prometheus(&self) -> String {
        let mut text = PrometheusText::new();
        self.write_prometheus(&mut text);
        text.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_a_family_with_its_value() {
        let m = EngineMetrics {
            workflow_tasks: 1,
            conflicts: 2,
            loads: 3,
            corrupt_snapshots: 4,
            snapshots_saved: 5,
            activity_attempts: 6,
            dropped_tasks: 7,
            workflow_task_failures: 8,
            store_errors: 9,
            outbox_redelivered: 10,
            watchdog_findings: 11,
            watchdog_actions: 12,
        };
        let text = m.to_prometheus();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples.len(), 12, "{text}");
        for (i, line) in samples.iter().enumerate() {
            let (name, value) = line.split_once(' ').unwrap();
            assert!(
                name.starts_with("saga_engine_") && name.ends_with("_total"),
                "{line}"
            );
            assert_eq!(value, (i + 1).to_string(), "{line}");
            // Each sample follows its own HELP and TYPE lines.
            assert!(
                text.contains(&format!("# TYPE {name} counter\n{line}\n")),
                "{text}"
            );
            assert!(text.contains(&format!("# HELP {name} ")), "{text}");
        }
        assert!(text.contains("saga_engine_conflicts_total 2\n"));
        assert!(text.contains("saga_engine_outbox_redelivered_total 10\n"));
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut t = PrometheusText::new();
        t.family("x", "a \\ b\nc", MetricType::Gauge).sample(
            "x",
            &[("workflow_type", "a\"b\\c\nd"), ("status", "Running")],
            2.5,
        );
        assert_eq!(
            t.finish(),
            "# HELP x a \\\\ b\\nc\n# TYPE x gauge\n\
             x{workflow_type=\"a\\\"b\\\\c\\nd\",status=\"Running\"} 2.5\n"
        );
    }

    #[test]
    fn values_use_the_formats_spellings() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(1e20), "100000000000000000000");
    }
}
