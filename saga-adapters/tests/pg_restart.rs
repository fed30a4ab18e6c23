//! PostgreSQL restarted while sagas run (issue 4): calls during the outage fail with a
//! clear `EventStore` error carrying `code=unavailable`, the pool reconnects when the
//! server is back, and every saga finishes with a sound history.
//!
//! The test runs a private PostgreSQL (initdb in a temporary directory, on a free port)
//! so that stopping it disturbs no one. Without the server binaries it skips, unless
//! `CI` is set, where it fails.
#![cfg(feature = "postgres")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use saga_adapters::{PostgresConfig, PostgresStore};
use saga_runtime::conformance::engine::{self as scenario, assert_history_sound};
use saga_runtime::conformance::fixtures::{order_saga, Approval, Order};
use saga_runtime::domain::SagaId;
use saga_runtime::port::EventStore;
use saga_runtime::ErrorKind;

struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

fn pg_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("pg_ctl").exists() && b.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

/// Runs a server binary as the `postgres` user (the server refuses to run as root).
fn as_postgres(bin: &Path, tool: &str, args: &[&str]) -> std::process::Output {
    let tool = bin.join(tool);
    let output = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&tool)
            .args(args)
            .output()
    } else {
        Command::new(&tool).args(args).output()
    };
    output.unwrap_or_else(|e| panic!("run {}: {e}", tool.display()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Cluster {
    fn create() -> Option<Cluster> {
        let Some(bin) = pg_bin() else {
            let why = "no PostgreSQL server binaries under /usr/lib/postgresql";
            if std::env::var_os("CI").is_some() {
                panic!("{why} (CI is set)");
            }
            eprintln!("SKIPPED: {why}");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("saga-pg-restart-")
            .tempdir()
            .unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success(), "chown the cluster directory");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.path().join("data");
        let out = as_postgres(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster { bin, dir, port };
        cluster.start();
        Some(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn pg_ctl(&self, args: &[&str]) {
        let out = as_postgres(&self.bin, "pg_ctl", args);
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.pg_ctl(&[
            "-D",
            &self.data(),
            "-o",
            &options,
            "-l",
            &log,
            "-w",
            "start",
        ]);
    }

    fn stop(&self) {
        self.pg_ctl(&["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

/// Retries `f` until it succeeds (the pool finds its old connections dead one by one
/// after a restart), for at most 30 s.
async fn retry<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = saga_runtime::Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                eprintln!("{what}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_while_sagas_run_loses_nothing() {
    let Some(cluster) = Cluster::create() else {
        return;
    };
    let config = PostgresConfig {
        max_connections: 8,
        acquire_timeout: Duration::from_secs(2),
        ..PostgresConfig::new(cluster.url())
    };
    let store = PostgresStore::connect_with(config).await.expect("connect");
    let engine = scenario::builder(store.clone()).build().await.unwrap();
    const N: usize = 20;
    let ids: Vec<String> = (0..N).map(|i| format!("restart-{i}")).collect();
    for id in &ids {
        let mut order = Order::new(id);
        order.needs_approval = true;
        engine
            .start::<order_saga>(id.as_str(), order)
            .await
            .unwrap();
    }
    for id in &ids {
        while engine
            .describe(id.as_str())
            .await
            .unwrap()
            .waiting_for_signals
            != ["approval"]
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Half are approved, and the server goes down while their last step runs.
    for id in &ids[..N / 2] {
        engine
            .signal(id.as_str(), "approval", Approval { granted: true })
            .await
            .unwrap();
    }
    cluster.stop();

    let err = store.version(&SagaId::new("restart-0")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::EventStore, "{err}");
    assert_eq!(err.context("code"), Some("unavailable"), "{err}");
    let err = engine
        .signal(ids[N - 1].as_str(), "approval", Approval { granted: true })
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::EventStore, "{err}");
    assert!(
        !engine.health().await.is_healthy(),
        "health reports the outage"
    );
    assert!(
        engine.metrics().store_errors >= 1,
        "the outage is counted: {:?}",
        engine.metrics()
    );

    cluster.start();
    for id in &ids[N / 2..] {
        retry("approve after the restart", || {
            engine.signal(id.as_str(), "approval", Approval { granted: true })
        })
        .await;
    }
    for id in &ids {
        let receipt = retry("wait for the result", || {
            engine.result::<order_saga>(id.as_str())
        })
        .await;
        assert_eq!(receipt.shipment.tracking, format!("trk-{id}"));
        let h = store.history(&SagaId::new(id)).await.unwrap();
        assert_history_sound(&h);
        engine.verify_replay(id.as_str()).await.unwrap();
    }
    assert!(engine.health().await.is_healthy());
}
