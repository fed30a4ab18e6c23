//! `saga-5` with other worker processes (`--processes`), run as the benchmark command
//! runs it: the driving process asks each worker for its activity counters, so the
//! run is checked (every step ran exactly once) and reported across all processes.

use std::net::TcpStream;
use std::process::Command;

use serde_json::Value;

/// The servers the run needs, or `None` where one is down and `CI` is unset (skipped,
/// with the reason printed); with `CI` set, a panic.
fn servers_up() -> Option<()> {
    for (name, addr) in [("PostgreSQL", "127.0.0.1:5432"), ("NATS", "127.0.0.1:4222")] {
        if let Err(e) = TcpStream::connect(addr) {
            if std::env::var_os("CI").is_some() {
                panic!("{name} is required (CI is set): {addr}: {e}");
            }
            eprintln!("SKIPPED: {name} unreachable at {addr}: {e}");
            return None;
        }
    }
    Some(())
}

#[test]
fn three_processes_count_every_step_once_between_them() {
    if servers_up().is_none() {
        return;
    }
    let workflows = 300;
    let out = Command::new(env!("CARGO_BIN_EXE_saga-bench"))
        .args(["saga-5", "--backend", "postgres+nats", "--processes", "3"])
        .args([
            "--only",
            "throughput",
            "--workflows",
            &workflows.to_string(),
        ])
        .args(["--concurrency", "30", "--json"])
        .output()
        .expect("saga-bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "saga-bench failed: {stderr}");
    let throughput: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|m| m["measurement"] == "throughput")
        .expect("a throughput measurement");

    let attempts: Vec<u64> = throughput["attempts_per_process"]
        .as_array()
        .expect("attempts_per_process")
        .iter()
        .map(|a| a.as_u64().expect("a count"))
        .collect();
    assert_eq!(attempts.len(), 3, "{throughput}");
    assert_eq!(attempts.iter().sum::<u64>(), workflows * 5, "{throughput}");
    // Starts under load go through the broker, which hands them to every process that
    // pulls; each then runs its workflows' later steps itself.
    assert!(
        attempts.iter().filter(|&&a| a > 0).count() >= 2,
        "the run was not shared: {throughput}"
    );
    let eager = throughput["eager_share"].as_f64().expect("eager_share");
    assert!(eager > 0.0 && eager <= 1.0, "{throughput}");
    // The store counters are every process's: a workflow's start and its five steps
    // are six commits, whichever process wrote them (the driving process's alone,
    // with every start but about a third of the steps, read about half of that).
    let commits = throughput["commits_per_step"]
        .as_f64()
        .expect("commits_per_step");
    assert!((1.2..1.25).contains(&commits), "{throughput}");
    let statements = throughput["statements_per_step"]
        .as_f64()
        .expect("statements_per_step");
    assert!(statements > 0.0, "{throughput}");
}
