//! Metrics in the Prometheus text exposition format (version 0.0.4), so that an
//! application embedding the engine can serve them at its own `/metrics`:
//! [`EngineMetrics::to_prometheus`] renders the engine's counters, its activity
//! latency histograms ([`Histogram`], by activity type and [`AttemptOutcome`]) and
//! its workflow lifecycle counts ([`WorkflowCounts`]); [`PrometheusText`] writes any
//! other family in the same format (the `saga serve` command renders its store and
//! task-queue gauges with it). With the feature `metrics-http`, `metrics::http::serve` answers
//! Prometheus' scrapes itself (a worker process with no web server of its own).
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

#[cfg(feature = "metrics-http")]
pub mod http;

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::{EventType, HistoryEvent};
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
    /// Observations counted in cumulative buckets, with their sum and count
    /// (written with [`PrometheusText::histogram`]).
    Histogram,
}

impl MetricType {
    fn name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
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

    /// The samples of one histogram of the current family (a family of
    /// [`MetricType::Histogram`]): `name_bucket` per upper bound (`le`, cumulative,
    /// `+Inf` last), `name_sum` in seconds and `name_count`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) -> &mut Self {
        let bucket = format!("{name}_bucket");
        for (bound, count) in h.cumulative() {
            let le = format_value(bound);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, count as f64);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum().as_secs_f64());
        self.sample(&format!("{name}_count"), labels, h.count() as f64)
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

/// Upper bounds of the activity latency buckets, in nanoseconds: 0.5 ms to 60 s, about
/// three per decade, then `+Inf`.
const LATENCY_BOUNDS_NS: [u64; 16] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// A latency histogram with fixed buckets (0.5 ms, 1 ms, 2.5 ms, ... 30 s, 60 s,
/// `+Inf`): what one `observe` costs is a binary search and two additions.
///
/// ```
/// use std::time::Duration;
/// use saga_runtime::metrics::Histogram;
///
/// let mut h = Histogram::default();
/// h.observe(Duration::from_millis(3));
/// h.observe(Duration::from_secs(90));
/// assert_eq!(h.count(), 2);
/// // Cumulative: 3 ms is within the 5 ms bucket, 90 s only within `+Inf`.
/// let buckets: Vec<(f64, u64)> = h.cumulative().collect();
/// assert_eq!(buckets[2], (0.0025, 0));
/// assert_eq!(buckets[3], (0.005, 1));
/// assert_eq!(buckets.last(), Some(&(f64::INFINITY, 2)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`'s alone.
    counts: [u64; LATENCY_BOUNDS_NS.len() + 1],
    sum_ns: u64,
}

impl Histogram {
    /// The buckets' upper bounds in seconds, `+Inf` excluded.
    pub fn bounds() -> impl Iterator<Item = f64> {
        LATENCY_BOUNDS_NS.iter().map(|&ns| ns as f64 / 1e9)
    }

    /// Counts one observation.
    pub fn observe(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // `le` buckets: the first bound at or above the value.
        let i = LATENCY_BOUNDS_NS.partition_point(|&b| b < ns);
        self.counts[i] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    /// Observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The observations added up.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns)
    }

    /// `(upper bound in seconds, observations at or below it)` per bucket, smallest
    /// first, `+Inf` (the count) last: the `le` buckets of the text format.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = Self::bounds().chain(std::iter::once(f64::INFINITY));
        bounds.zip(self.counts.iter().scan(0, |acc, &n| {
            *acc += n;
            Some(*acc)
        }))
    }
}

/// How an activity attempt ended (the `outcome` label of its latency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttemptOutcome {
    /// It returned its output.
    Completed,
    /// It returned an error (or panicked).
    Failed,
    /// It ran past its start-to-close timeout.
    TimedOut,
}

impl AttemptOutcome {
    /// All outcomes.
    pub const ALL: [AttemptOutcome; 3] = [
        AttemptOutcome::Completed,
        AttemptOutcome::Failed,
        AttemptOutcome::TimedOut,
    ];

    /// The label value: `completed`, `failed`, `timed_out`.
    pub const fn name(self) -> &'static str {
        match self {
            AttemptOutcome::Completed => "completed",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::TimedOut => "timed_out",
        }
    }
}

/// The latency of one activity type's attempts with one outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityLatency {
    /// The activity (or compensation) type.
    pub activity_type: String,
    /// How the attempts ended.
    pub outcome: AttemptOutcome,
    /// How long they took, from the worker starting the attempt to its result.
    pub histogram: Histogram,
}

/// What happened to one workflow type's executions in this engine: each counted by
/// the engine that appended the event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkflowCounts {
    /// The workflow type.
    pub workflow_type: String,
    /// Executions started: by this engine, or by a client and first run here.
    pub started: u64,
    /// Closed with an output.
    pub completed: u64,
    /// Closed failed: nothing to compensate, or a compensation failed (a workflow
    /// timeout counts here).
    pub failed: u64,
    /// Closed after every compensation ran (a failed saga, undone).
    pub compensated: u64,
    /// Closed by a cancellation with nothing to compensate.
    pub cancelled: u64,
}

/// Where a batch of events leaves an execution's lifecycle (see [`lifecycle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    Completed,
    Failed,
    Compensated,
    Cancelled,
}

/// Whether `events`, appended to a history of `version` events, start the execution,
/// and how they close it if they do: the last lifecycle event decides (`Failed`
/// followed by `Compensating` in the same append does not close it).
///
/// An engine's start appends `WorkflowExecutionStarted` with the first decisions; a
/// client's start (`SagaClient`, `saga start`, `POST /executions`) appends the start
/// event alone, and the worker that runs its first workflow task appends on top of
/// that one event: both count as the start, once.
pub(crate) fn lifecycle(version: u64, events: &[HistoryEvent]) -> (bool, Option<Closed>) {
    let mut started = version == 1;
    let mut closed = None;
    for e in events {
        match e.event_type {
            EventType::WorkflowExecutionStarted => started = true,
            EventType::WorkflowExecutionCompleted => closed = Some(Closed::Completed),
            EventType::WorkflowExecutionFailed | EventType::WorkflowExecutionTimedOut => {
                closed = Some(Closed::Failed)
            }
            EventType::WorkflowExecutionCompensating => closed = None,
            EventType::WorkflowExecutionCanceled => {
                closed = Some(if e.attr_str("reason") == Some("compensated") {
                    Closed::Compensated
                } else {
                    Closed::Cancelled
                })
            }
            _ => {}
        }
    }
    (started, closed)
}

/// The engine's histograms and per-type counts, updated by its workers: one short
/// lock per attempt or closing append, never held across an await; a type's entry
/// is allocated once, the first time it is seen.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    activities: Mutex<HashMap<String, [Histogram; 3]>>,
    workflows: Mutex<HashMap<String, WorkflowCounts>>,
}

impl Recorder {
    pub(crate) fn activity_attempt(
        &self,
        activity_type: &str,
        outcome: AttemptOutcome,
        took: Duration,
    ) {
        let i = outcome as usize;
        let mut map = self.activities.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(activity_type) {
            Some(hs) => hs[i].observe(took),
            None => {
                let mut hs: [Histogram; 3] = Default::default();
                hs[i].observe(took);
                map.insert(activity_type.to_owned(), hs);
            }
        }
    }

    /// Counts what one append did to an execution of `workflow_type`.
    pub(crate) fn workflow(&self, workflow_type: &str, started: bool, closed: Option<Closed>) {
        if !started && closed.is_none() {
            return;
        }
        let mut map = self.workflows.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(workflow_type) {
            let counts = WorkflowCounts {
                workflow_type: workflow_type.to_owned(),
                ..WorkflowCounts::default()
            };
            map.insert(workflow_type.to_owned(), counts);
        }
        let Some(c) = map.get_mut(workflow_type) else {
            return;
        };
        c.started += u64::from(started);
        match closed {
            Some(Closed::Completed) => c.completed += 1,
            Some(Closed::Failed) => c.failed += 1,
            Some(Closed::Compensated) => c.compensated += 1,
            Some(Closed::Cancelled) => c.cancelled += 1,
            None => {}
        }
    }

    /// Copies: latencies sorted by type then outcome (empty histograms left out),
    /// counts sorted by type.
    pub(crate) fn snapshot(&self) -> (Vec<ActivityLatency>, Vec<WorkflowCounts>) {
        let mut latencies: Vec<ActivityLatency> = {
            let map = self.activities.lock().unwrap_or_else(|p| p.into_inner());
            map.iter()
                .flat_map(|(t, hs)| {
                    AttemptOutcome::ALL
                        .into_iter()
                        .zip(hs.iter())
                        .filter(|(_, h)| h.count() > 0)
                        .map(|(outcome, h)| ActivityLatency {
                            activity_type: t.clone(),
                            outcome,
                            histogram: h.clone(),
                        })
                })
                .collect()
        };
        latencies.sort_by(|a, b| (&a.activity_type, a.outcome).cmp(&(&b.activity_type, b.outcome)));
        let mut workflows: Vec<WorkflowCounts> = {
            let map = self.workflows.lock().unwrap_or_else(|p| p.into_inner());
            map.values().cloned().collect()
        };
        workflows.sort_by(|a, b| a.workflow_type.cmp(&b.workflow_type));
        (latencies, workflows)
    }
}

impl EngineMetrics {
    /// The counters as `saga_engine_<name>_total` counter families, one per field;
    /// `cached_executions` as the gauge `saga_engine_cached_executions`; the activity
    /// latencies as the histogram family
    /// `saga_engine_activity_attempt_duration_seconds{activity_type, outcome}`; the
    /// workflow counts as `saga_engine_workflows_started_total{workflow_type}` and
    /// `saga_engine_workflows_closed_total{workflow_type, outcome}` (`completed`,
    /// `failed`, `compensated`, `cancelled`).
    pub fn write_prometheus(&self, text: &mut PrometheusText) {
        let counters: [(&str, &str, u64); 15] = [
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
            (
                "saga_engine_eager_activities_total",
                "Activity attempts run eagerly, without the task queue.",
                self.eager_activities,
            ),
            (
                "saga_engine_histories_carried_total",
                "Executions built from the history their task carried, not loaded from the store.",
                self.histories_carried,
            ),
            (
                "saga_engine_inputs_handed_over_total",
                "Inputs recorded without the workflow's code and handed to a worker that has it.",
                self.inputs_handed_over,
            ),
        ];
        for (name, help, value) in counters {
            text.family(name, help, MetricType::Counter)
                .sample(name, &[], value as f64);
        }
        let name = "saga_engine_cached_executions";
        text.family(
            name,
            "Executions in the engine's cache now (at most its max_cached_executions).",
            MetricType::Gauge,
        )
        .sample(name, &[], self.cached_executions as f64);

        let name = "saga_engine_activity_attempt_duration_seconds";
        text.family(
            name,
            "Activity attempts run by this engine's workers, by how long they took.",
            MetricType::Histogram,
        );
        for l in &self.activity_latency {
            let labels = [
                ("activity_type", l.activity_type.as_str()),
                ("outcome", l.outcome.name()),
            ];
            text.histogram(name, &labels, &l.histogram);
        }

        let name = "saga_engine_workflows_started_total";
        text.family(
            name,
            "Executions this engine started, or ran first after a client started them, by workflow type.",
            MetricType::Counter,
        );
        for w in &self.workflows {
            text.sample(
                name,
                &[("workflow_type", &w.workflow_type)],
                w.started as f64,
            );
        }
        let name = "saga_engine_workflows_closed_total";
        text.family(
            name,
            "Executions this engine closed, by workflow type and outcome.",
            MetricType::Counter,
        );
        for w in &self.workflows {
            for (outcome, n) in [
                ("completed", w.completed),
                ("failed", w.failed),
                ("compensated", w.compensated),
                ("cancelled", w.cancelled),
            ] {
                let labels = [
                    ("workflow_type", w.workflow_type.as_str()),
                    ("outcome", outcome),
                ];
                text.sample(name, &labels, n as f64);
            }
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
            eager_activities: 13,
            histories_carried: 14,
            inputs_handed_over: 15,
            cached_executions: 16,
            activity_latency: Vec::new(),
            workflows: Vec::new(),
        };
        let text = m.to_prometheus();
        // Without activities or workflows the histogram and per-type families have
        // their HELP and TYPE lines and no samples.
        let mut samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples.len(), 16, "{text}");
        // The one gauge follows the counters.
        assert_eq!(samples.pop(), Some("saga_engine_cached_executions 16"));
        assert!(text.contains("# TYPE saga_engine_cached_executions gauge\n"));
        assert!(text.contains(
            "# TYPE saga_engine_activity_attempt_duration_seconds histogram\n\
             # HELP saga_engine_workflows_started_total "
        ));
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

    #[test]
    fn observations_land_in_the_first_bucket_at_or_above_them() {
        let mut h = Histogram::default();
        for ms in [0, 1, 3, 50, 51, 2_000] {
            h.observe(Duration::from_millis(ms));
        }
        h.observe(Duration::from_micros(500)); // exactly on a bound: `le` includes it
        h.observe(Duration::from_secs(61)); // past the last bound: `+Inf` only
        assert_eq!(h.count(), 8);
        assert_eq!(
            h.sum(),
            Duration::from_micros(500) + Duration::from_millis(63_105)
        );
        let le: Vec<(f64, u64)> = h.cumulative().collect();
        assert_eq!(le.len(), 17);
        let at = |bound: f64| le.iter().find(|(b, _)| *b == bound).unwrap().1;
        assert_eq!(at(0.0005), 2); // 0 ms and 0.5 ms
        assert_eq!(at(0.001), 3);
        assert_eq!(at(0.0025), 3);
        assert_eq!(at(0.005), 4);
        assert_eq!(at(0.05), 5); // 50 ms, not 51 ms
        assert_eq!(at(0.1), 6);
        assert_eq!(at(2.5), 7);
        assert_eq!(at(60.0), 7);
        assert_eq!(le[16], (f64::INFINITY, 8));
        // Cumulative: never decreasing.
        assert!(le.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(2));
        h.observe(Duration::from_millis(750));
        let mut t = PrometheusText::new();
        t.family("lat_seconds", "Latency.", MetricType::Histogram)
            .histogram("lat_seconds", &[("activity_type", "a\"b")], &h);
        let text = t.finish();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# HELP lat_seconds Latency.");
        assert_eq!(lines[1], "# TYPE lat_seconds histogram");
        assert_eq!(
            lines[2],
            "lat_seconds_bucket{activity_type=\"a\\\"b\",le=\"0.0005\"} 0"
        );
        assert!(lines.contains(&"lat_seconds_bucket{activity_type=\"a\\\"b\",le=\"0.0025\"} 1"));
        assert!(lines.contains(&"lat_seconds_bucket{activity_type=\"a\\\"b\",le=\"0.5\"} 1"));
        assert!(lines.contains(&"lat_seconds_bucket{activity_type=\"a\\\"b\",le=\"1\"} 2"));
        assert!(lines.contains(&"lat_seconds_bucket{activity_type=\"a\\\"b\",le=\"60\"} 2"));
        assert_eq!(
            lines[18],
            "lat_seconds_bucket{activity_type=\"a\\\"b\",le=\"+Inf\"} 2"
        );
        assert_eq!(lines[19], "lat_seconds_sum{activity_type=\"a\\\"b\"} 0.752");
        assert_eq!(lines[20], "lat_seconds_count{activity_type=\"a\\\"b\"} 2");
        assert_eq!(lines.len(), 21);
    }

    fn event(event_type: EventType, attributes: serde_json::Value) -> HistoryEvent {
        HistoryEvent::new(
            crate::domain::SagaId::from("s"),
            0,
            event_type,
            chrono::Utc::now(),
            attributes,
            String::new(),
        )
    }

    #[test]
    fn the_last_lifecycle_event_of_an_append_decides_how_it_closes() {
        use serde_json::json;
        use EventType::*;
        let of = |types: &[(EventType, serde_json::Value)]| {
            let events: Vec<_> = types.iter().map(|(t, a)| event(*t, a.clone())).collect();
            lifecycle(5, &events)
        };
        let none = json!({});
        assert_eq!(
            of(&[
                (WorkflowExecutionStarted, none.clone()),
                (ActivityTaskScheduled, none.clone())
            ]),
            (true, None)
        );
        assert_eq!(
            of(&[(WorkflowExecutionCompleted, none.clone())]),
            (false, Some(Closed::Completed))
        );
        assert_eq!(
            of(&[
                (WorkflowExecutionFailed, none.clone()),
                (WorkflowExecutionCompensating, none.clone())
            ]),
            (false, None),
            "failed with compensations to run is not closed"
        );
        assert_eq!(
            of(&[(WorkflowExecutionTimedOut, none.clone())]),
            (false, Some(Closed::Failed))
        );
        assert_eq!(
            of(&[(WorkflowExecutionCanceled, json!({"reason": "compensated"}))]),
            (false, Some(Closed::Compensated))
        );
        assert_eq!(
            of(&[(WorkflowExecutionCanceled, json!({"reason": "cancelled"}))]),
            (false, Some(Closed::Cancelled))
        );
        assert_eq!(of(&[(ActivityTaskCompleted, none.clone())]), (false, None));
        // The first workflow task after a client's start (the history is its start).
        let first = [event(ActivityTaskScheduled, none)];
        assert_eq!(lifecycle(1, &first), (true, None));
        assert_eq!(lifecycle(2, &first), (false, None));
    }

    #[test]
    fn the_recorder_keeps_one_histogram_per_type_and_outcome() {
        let r = Recorder::default();
        r.activity_attempt("b", AttemptOutcome::Completed, Duration::from_millis(3));
        r.activity_attempt("a", AttemptOutcome::TimedOut, Duration::from_secs(1));
        r.activity_attempt("b", AttemptOutcome::Completed, Duration::from_millis(7));
        r.activity_attempt("b", AttemptOutcome::Failed, Duration::from_millis(1));
        r.workflow("w", true, None);
        r.workflow("w", false, Some(Closed::Compensated));
        r.workflow("w", false, None); // neither: not even an entry for a new type
        r.workflow("v", false, None);
        let (latency, workflows) = r.snapshot();
        let keys: Vec<_> = latency
            .iter()
            .map(|l| (l.activity_type.as_str(), l.outcome, l.histogram.count()))
            .collect();
        assert_eq!(
            keys,
            [
                ("a", AttemptOutcome::TimedOut, 1),
                ("b", AttemptOutcome::Completed, 2),
                ("b", AttemptOutcome::Failed, 1),
            ]
        );
        assert_eq!(latency[1].histogram.sum(), Duration::from_millis(10));
        assert_eq!(
            workflows,
            [WorkflowCounts {
                workflow_type: "w".into(),
                started: 1,
                compensated: 1,
                ..WorkflowCounts::default()
            }]
        );

        let m = EngineMetrics {
            activity_latency: latency,
            workflows,
            ..EngineMetrics::default()
        };
        let text = m.to_prometheus();
        assert!(text.contains(
            "saga_engine_activity_attempt_duration_seconds_count{activity_type=\"b\",outcome=\"completed\"} 2\n"
        ));
        assert!(text.contains(
            "saga_engine_activity_attempt_duration_seconds_bucket{activity_type=\"a\",outcome=\"timed_out\",le=\"0.5\"} 0\n"
        ));
        assert!(text.contains(
            "saga_engine_activity_attempt_duration_seconds_bucket{activity_type=\"a\",outcome=\"timed_out\",le=\"1\"} 1\n"
        ));
        assert!(text.contains("saga_engine_workflows_started_total{workflow_type=\"w\"} 1\n"));
        assert!(text.contains(
            "saga_engine_workflows_closed_total{workflow_type=\"w\",outcome=\"compensated\"} 1\n"
        ));
        assert!(text.contains(
            "saga_engine_workflows_closed_total{workflow_type=\"w\",outcome=\"completed\"} 0\n"
        ));
        assert_well_formed(&text);
    }

    /// The text format's grammar as Prometheus reads it: comments are HELP or TYPE,
    /// each family's TYPE comes once and before its samples, every sample is
    /// `name{labels} value` with a name of the family (`_bucket`, `_sum`, `_count`
    /// for a histogram) and a number.
    fn assert_well_formed(text: &str) {
        let mut types = std::collections::HashMap::new();
        let mut current: Option<(String, String)> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "{line}"
                );
                current = Some((name.to_owned(), kind.to_owned()));
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(!line.starts_with('#'), "{line}");
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value == "+Inf" || value.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap();
            assert!(is_name(name), "{line}");
            let (family, kind) = current.as_ref().expect("a sample before any TYPE");
            let ok = match kind.as_str() {
                "histogram" => [
                    format!("{family}_bucket"),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ]
                .contains(&name.to_owned()),
                _ => name == family,
            };
            assert!(ok, "`{line}` is not a sample of {family}");
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                }
            }
        }
    }
}
