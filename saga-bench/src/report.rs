//! Measurements and how they are printed: one JSON object per line (`--json`), or a
//! table per scenario.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

/// One measurement, as DESIGN.md section 9 names its fields. Fields that do not apply
/// are `null`; scenario-specific figures go in `extra`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Measurement {
    pub(crate) scenario: &'static str,
    /// Which figure of the scenario this is (`throughput`, `latency`, `pure`, ...).
    pub(crate) measurement: String,
    pub(crate) backend: &'static str,
    pub(crate) codec: &'static str,
    pub(crate) workflows: Option<u64>,
    pub(crate) concurrency: Option<u64>,
    pub(crate) workflows_per_sec: Option<f64>,
    pub(crate) steps_per_sec: Option<f64>,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    /// The baseline's steps/s, for figures reported against one.
    pub(crate) baseline: Option<f64>,
    /// `steps_per_sec / baseline`.
    pub(crate) ratio: Option<f64>,
    #[serde(flatten)]
    pub(crate) extra: Map<String, Value>,
}

impl Measurement {
    pub(crate) fn new(
        scenario: &'static str,
        measurement: impl Into<String>,
        backend: &'static str,
        codec: &'static str,
    ) -> Self {
        Measurement {
            scenario,
            measurement: measurement.into(),
            backend,
            codec,
            workflows: None,
            concurrency: None,
            workflows_per_sec: None,
            steps_per_sec: None,
            p50_ms: None,
            p99_ms: None,
            baseline: None,
            ratio: None,
            extra: Map::new(),
        }
    }

    /// Adds a scenario-specific field.
    pub(crate) fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Sets `p50_ms` and `p99_ms` from a set of samples.
    pub(crate) fn with_percentiles(mut self, samples: &mut [Duration]) -> Self {
        self.p50_ms = percentile(samples, 0.50).map(ms);
        self.p99_ms = percentile(samples, 0.99).map(ms);
        self
    }

    /// Sets `baseline` and `ratio` against a baseline's steps/s.
    pub(crate) fn against(mut self, baseline_steps_per_sec: f64) -> Self {
        self.baseline = Some(round(baseline_steps_per_sec, 0));
        self.ratio = self
            .steps_per_sec
            .map(|s| round(s / baseline_steps_per_sec, 4));
        self
    }
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`
/// (Linux; 10 ms resolution). On a shared machine, work per CPU-second is steadier
/// than work per wall-second.
pub(crate) fn process_cpu() -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// Busy CPU time of the whole machine so far, all cores together: user, nice, system,
/// irq and softirq time from the first line of `/proc/stat` (Linux; 10 ms ticks).
/// Steal time is left out: it is the hypervisor running someone else.
///
/// Why: the database, the broker and every worker process run on this machine, so
/// busy CPU per step is what a step costs all of them together: a cost, where steps
/// per second are a speed that follows the machine's of the moment (its disk's above
/// all: the raw commit rate tripled from one day to the next while saga-5 with three
/// processes doubled). Other programs on the machine count too.
pub(crate) fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut fields = stat.lines().next()?.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait irq softirq
    let ticks: Vec<u64> = fields
        .take(7)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let busy = ticks.get(..3)?.iter().sum::<u64>() + ticks.get(5..7)?.iter().sum::<u64>();
    Some(Duration::from_millis(busy * 10))
}

/// CPU time used so far by every process of this machine named `name`
/// (`/proc/<pid>/comm`), together; `None` when none runs here (or not on Linux).
///
/// Why: the broker (`nats-server`) shares the machine with the database and the
/// workers, and its part of each saga's cost is what a change to the messages a saga
/// sends moves. A process that started or ended during a run is counted only for what
/// it used while it was alive at both readings, so this is for long-lived servers.
pub(crate) fn named_processes_cpu(name: &str) -> Option<Duration> {
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name();
        if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let dir = entry.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if comm.trim_end() != name {
            continue;
        }
        if let Some(cpu) = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|stat| stat_cpu(&stat))
        {
            total = Some(total.unwrap_or(Duration::ZERO) + cpu);
        }
    }
    total
}

/// `utime + stime` of a `/proc/<pid>/stat` line. Fields after the parenthesised command
/// name start at field 3 (`state`); `utime` and `stime` are fields 14 and 15, in clock
/// ticks (100 per second on Linux).
fn stat_cpu(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// The machine's busy CPU time ([`machine_busy`]) since `before`.
pub(crate) fn machine_busy_since(before: Option<Duration>) -> Option<Duration> {
    machine_busy()
        .zip(before)
        .map(|(after, before)| after.saturating_sub(before))
}

/// The 1-minute load average of the machine (`/proc/loadavg`), to judge how shared it
/// was during a run.
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Milliseconds, to the nanosecond.
pub(crate) fn ms(d: Duration) -> f64 {
    round(d.as_secs_f64() * 1e3, 6)
}

/// `x` rounded to `digits` decimals (for readable output; the measurements are nowhere
/// near that precise).
pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Nearest-rank percentile `q` (0..=1) of `samples` (sorted in place).
pub(crate) fn percentile(samples: &mut [Duration], q: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = (q * samples.len() as f64).ceil() as usize;
    Some(samples[rank.clamp(1, samples.len()) - 1])
}

/// The median of `values` (sorted in place).
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Prints measurements: at once as JSON lines, or as a table per scenario on `flush`.
pub(crate) struct Reporter {
    json: bool,
    pending: Vec<Measurement>,
}

impl Reporter {
    pub(crate) fn new(json: bool) -> Self {
        Reporter {
            json,
            pending: Vec::new(),
        }
    }

    pub(crate) fn emit(&mut self, m: Measurement) {
        if self.json {
            match serde_json::to_string(&m) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("saga-bench: measurement does not encode: {e}"),
            }
        } else {
            self.pending.push(m);
        }
    }

    /// Prints the buffered measurements as a table (nothing in JSON mode).
    pub(crate) fn flush(&mut self, title: &str) {
        if self.pending.is_empty() {
            return;
        }
        let rows: Vec<Map<String, Value>> = self
            .pending
            .drain(..)
            .filter_map(|m| match serde_json::to_value(m) {
                Ok(Value::Object(o)) => Some(o),
                _ => None,
            })
            .collect();
        println!("{}", table(title, &rows));
    }
}

/// Columns in the order they are shown; any other field follows, by name.
const COLUMNS: &[&str] = &[
    "measurement",
    "codec",
    "workflows",
    "concurrency",
    "workers",
    "history_len",
    "snapshots",
    "workflows_per_sec",
    "steps_per_sec",
    "p50_ms",
    "p99_ms",
    "baseline",
    "ratio",
    "load_ms",
    "fetch_ms",
    "events_per_sec",
    "encode_ns",
    "decode_ns",
    "bytes",
];

/// Always the same for one table: said once in its title.
const IN_TITLE: &[&str] = &["scenario", "backend"];

fn table(title: &str, rows: &[Map<String, Value>]) -> String {
    let present = |k: &str| rows.iter().any(|r| r.get(k).is_some_and(|v| !v.is_null()));
    let mut columns: Vec<String> = COLUMNS
        .iter()
        .filter(|c| present(c))
        .map(|c| (*c).to_owned())
        .collect();
    let mut others: Vec<String> = rows
        .iter()
        .flat_map(|r| r.keys())
        .filter(|k| !COLUMNS.contains(&k.as_str()) && !IN_TITLE.contains(&k.as_str()))
        .filter(|k| present(k))
        .cloned()
        .collect();
    others.sort();
    others.dedup();
    columns.extend(others);
    let cell = |r: &Map<String, Value>, c: &str| match r.get(c) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => format_number(f),
            _ => n.to_string(),
        },
        Some(v) => v.to_string(),
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(r, c)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| cells.iter().map(|r| r[i].len()).fold(c.len(), usize::max))
        .collect();
    let backend = rows
        .first()
        .and_then(|r| r.get("backend"))
        .and_then(Value::as_str)
        .unwrap_or("-");
    let mut out = format!("== {title} (backend {backend})\n");
    let line = |out: &mut String, items: &[String]| {
        let padded: Vec<String> = items
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (s, w))| {
                if i == 0 {
                    format!("{s:<w$}")
                } else {
                    format!("{s:>w$}")
                }
            })
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut out, &columns);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&mut out, &rule);
    for r in &cells {
        line(&mut out, r);
    }
    out
}

/// Large rates without decimals, small times with enough of them.
fn format_number(f: f64) -> String {
    if f.abs() >= 1000.0 {
        format!("{f:.0}")
    } else if f.abs() >= 10.0 {
        format!("{f:.1}")
    } else {
        format!("{f:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test's own process, found by its name, is charged for the CPU it burns; a
    /// name no process has is `None`.
    #[test]
    fn a_named_process_is_charged_its_cpu() {
        let me = std::fs::read_to_string("/proc/self/comm").expect("Linux");
        let me = me.trim_end();
        let before = named_processes_cpu(me).expect("this process is found by its name");
        let own_before = process_cpu().expect("own CPU");
        // Burn at least 50 ms of CPU (given up after 10 s of a machine too busy).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        while process_cpu().unwrap() < own_before + Duration::from_millis(50)
            && std::time::Instant::now() < deadline
        {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        let burnt = process_cpu().unwrap() - own_before;
        let charged = named_processes_cpu(me).unwrap().saturating_sub(before);
        assert!(charged >= burnt, "{charged:?} charged for {burnt:?} burnt");
        assert_eq!(named_processes_cpu("no-such-process"), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut v, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&mut v, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&mut v, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&mut [], 0.5), None);
    }

    /// A core kept busy for 300 ms shows in the machine's busy time: whatever runs on
    /// that core meanwhile counts, the spin or what preempted it. Only a third of it is
    /// required: the readings tick every 10 ms, and the hypervisor may take the core
    /// for a while (steal time, not counted).
    #[test]
    fn machine_busy_counts_a_spinning_core() {
        let before = machine_busy();
        assert!(before.is_some(), "/proc/stat unreadable");
        let until = std::time::Instant::now() + Duration::from_millis(300);
        let mut spins = 0u64;
        while std::time::Instant::now() < until {
            spins = std::hint::black_box(spins + 1);
        }
        let busy = machine_busy_since(before).unwrap();
        assert!(
            busy >= Duration::from_millis(100),
            "{busy:?} after {spins} spins"
        );
    }

    #[test]
    fn json_lines_carry_every_required_field() {
        let m = Measurement::new("saga-5", "throughput", "memory", "json").with("workers", 4);
        let v = serde_json::to_value(&m).unwrap();
        for key in [
            "scenario",
            "backend",
            "codec",
            "workflows",
            "concurrency",
            "workflows_per_sec",
            "steps_per_sec",
            "p50_ms",
            "p99_ms",
            "baseline",
            "ratio",
        ] {
            assert!(v.get(key).is_some(), "{key} missing from {v}");
        }
        assert_eq!(v["workers"], 4);
        assert!(v["ratio"].is_null());
    }

    #[test]
    fn process_cpu_time_advances() {
        let before = process_cpu().unwrap();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(process_cpu().unwrap() >= before);
        assert!(load_average().is_some());
    }

    #[test]
    fn tables_skip_empty_columns() {
        let mut m = Measurement::new("codec", "event", "memory", "json").with("bytes", 300);
        m.workflows = Some(1);
        let row = match serde_json::to_value(m).unwrap() {
            Value::Object(o) => o,
            _ => unreachable!(),
        };
        let t = table("codec", &[row]);
        assert!(t.contains("bytes"), "{t}");
        assert!(!t.contains("ratio"), "{t}");
    }
}
