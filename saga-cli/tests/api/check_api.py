#!/usr/bin/env python3
"""CI check of `saga serve` against its own OpenAPI document and of its `/metrics`.

From a clean state: builds `saga`, fills a new SQLite store with the `examples`
crate's `order_saga` (one completed and one compensated execution), starts
`saga serve` on a free port, then
- runs schemathesis (PyPI, in a throwaway venv) on `/openapi.json`: every operation,
  all phases (coverage, fuzzing, stateful), every check except
  `positive_data_acceptance` (the API rightly refuses some schema-valid input: a time
  filter that is not a time, a blank id; the refusal is a documented 400). No
  failure is allowed;
- parses `/metrics` with prometheus-client's parser and checks the families and the
  counts the store holds;
- then again with `--nats` (a namespace of its own, whose streams are deleted at the
  end): schemathesis on the dead-letter operations, and the task-queue gauges parsed.
  Without a NATS server this part fails when CI is set and is skipped otherwise;
- and a worker's `/metrics` (the engine's counters and activity latency histograms,
  which `saga serve` cannot have): the `examples` `worker` on PostgreSQL (a schema of
  its own, dropped at the end) and NATS (its own namespace) with `SAGA_METRICS_ADDR`,
  three shop orders started with `saga start`, then its `/metrics` parsed.

Usage: python3 saga-cli/tests/api/check_api.py  (from anywhere; uses cargo's target
dir, so CARGO_TARGET_DIR is honoured). Exits non-zero on any failure.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
# Pinned: a new release may add checks or change the CLI; bump deliberately.
PACKAGES = ["schemathesis==4.32.5", "prometheus-client==0.26.0"]
CHECKS_EXCLUDED = "positive_data_acceptance"
NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
PG_URL = os.environ.get("SAGA_PG_URL", "postgres://postgres@127.0.0.1:5432/test")


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def target_dir():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)["target_directory"]


def main():
    work = tempfile.mkdtemp(prefix="saga-api-check-")
    server = None
    try:
        venv = os.path.join(work, "venv")
        run([sys.executable, "-m", "venv", venv])
        py = os.path.join(venv, "bin", "python")
        run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PACKAGES])

        run(["cargo", "build", "--quiet", "-p", "saga-cli", "--bin", "saga",
             "-p", "examples", "--bin", "order_saga", "--bin", "worker"], cwd=REPO)
        bins = os.path.join(target_dir(), "debug")
        db = os.path.join(work, "saga.db")
        run([os.path.join(bins, "order_saga")], cwd=REPO,
            env={**os.environ, "SAGA_DB": db}, stdout=subprocess.DEVNULL)

        saga = [os.path.join(bins, "saga"), "--store", f"sqlite://{db}"]
        schemathesis = os.path.join(venv, "bin", "schemathesis")

        server, base = start_server(saga)
        check_metrics(py, base)
        run([schemathesis, "run", f"{base}/openapi.json",
             "--checks", "all", "--exclude-checks", CHECKS_EXCLUDED,
             "--max-time", "60", "--no-color"], cwd=work)
        # The fuzzing started and signalled executions: the metrics still parse.
        check_metrics(py, base)
        stop(server)
        server = None

        if nats_reachable():
            namespace = f"ci_api_{os.getpid()}_{int(time.time())}"
            try:
                server, base = start_server(
                    saga, "--nats", NATS_URL, "--namespace", namespace,
                    "--queue", "default", "--queue", "payments")
                families = check_metrics(py, base)
                for name in ("saga_task_queue_depth", "saga_dead_letters",
                             "saga_dead_letters_open"):
                    queues = {s[1]["queue"] for s in families[name]["samples"]}
                    assert queues == {"default", "payments"}, (name, queues)
                run([schemathesis, "run", f"{base}/openapi.json",
                     "--include-path-regex", "^/dead-letters",
                     "--checks", "all", "--exclude-checks", CHECKS_EXCLUDED,
                     "--max-time", "30", "--no-color"], cwd=work)
            finally:
                if server is not None:
                    stop(server)
                    server = None
                delete_streams([f"SAGA_TASKS_{namespace}", f"SAGA_DLQ_{namespace}"])
            if pg_reachable():
                check_worker_metrics(py, bins, f"{namespace}_w")
        print("API check passed", flush=True)
    finally:
        if server is not None:
            stop(server)
        subprocess.run(["rm", "-rf", work], check=False)


def start_server(saga, *serve_args):
    """Starts `saga serve` on a free port; returns it and its base URL."""
    server = subprocess.Popen(
        [*saga, "serve", "--listen", "127.0.0.1:0", *serve_args],
        stdout=subprocess.PIPE, text=True,
    )
    first = server.stdout.readline().strip()
    prefix = "listening on "
    if not first.startswith(prefix):
        server.kill()
        sys.exit(f"saga serve did not start: {first!r}")
    base = first[len(prefix):]
    print(f"saga serve at {base}", flush=True)
    return server, base


def stop(server):
    server.terminate()
    if server.wait(timeout=10) != 0:
        sys.exit(f"saga serve exited with {server.returncode} on SIGTERM")


def pg_reachable():
    url = urllib.parse.urlparse(PG_URL)
    try:
        socket.create_connection((url.hostname or "127.0.0.1", url.port or 5432), timeout=2).close()
        return True
    except OSError as e:
        if os.environ.get("CI"):
            sys.exit(f"PostgreSQL at {PG_URL} is required (CI is set) but unreachable: {e}")
        print(f"SKIPPED the worker part: PostgreSQL at {PG_URL} is unreachable ({e})", flush=True)
        return False


def check_worker_metrics(py, bins, namespace):
    """A worker's /metrics: three shop orders (one compensated) run by the `worker`
    binary, then its engine counters and latency histograms parsed."""
    schema = namespace.lower()
    host, port = nats_address()
    worker = subprocess.Popen(
        [os.path.join(bins, "worker")],
        env={**os.environ, "SAGA_DATABASE_URL": PG_URL, "SAGA_SCHEMA": schema,
             "SAGA_NATS_URL": f"{host}:{port}", "SAGA_NATS_NAMESPACE": namespace,
             "SAGA_METRICS_ADDR": "127.0.0.1:0", "SAGA_CONCURRENCY": "4",
             # `saga start` writes the task to the outbox; the worker publishes it.
             "SAGA_REDELIVER_AFTER_MS": "200"},
        stdout=subprocess.PIPE, text=True,
    )
    try:
        first = worker.stdout.readline().strip()
        marker = " metrics at "
        if marker not in first:
            sys.exit(f"the worker did not serve metrics: {first!r}")
        metrics_url = first.split(marker, 1)[1]
        ready = worker.stdout.readline().strip()
        assert ready.endswith("ready"), ready
        saga = [os.path.join(bins, "saga"), "--store", PG_URL, "--schema", schema]
        for i in range(3):
            order = {"id": f"w{i}", "amount_cents": 100 + i, "carrier_rejects": i == 2}
            run([*saga, "start", "shop-order", "--input", json.dumps(order), "--id", f"w{i}"],
                stdout=subprocess.DEVNULL)
        deadline = time.time() + 60
        while True:
            listed = subprocess.run([*saga, "-o", "json", "list"], check=True,
                                    capture_output=True, text=True).stdout
            statuses = {e["saga_id"]: e["status"] for e in json.loads(listed)}
            if all(statuses.get(f"w{i}") in ("Completed", "Cancelled") for i in range(3)):
                break
            if time.time() > deadline:
                sys.exit(f"the worker did not finish the shop orders: {statuses}")
            time.sleep(0.2)
        families = parse_metrics(py, metrics_url)
        # prometheus-client names a counter family without its `_total`.
        attempts = families["saga_engine_activity_attempts"]
        assert attempts["type"] == "counter", attempts
        total = attempts["samples"][0][2]
        latency = families["saga_engine_activity_attempt_duration_seconds"]
        assert latency["type"] == "histogram", latency
        counts = {(s[1]["activity_type"], s[1]["outcome"]): s[2]
                  for s in latency["samples"] if s[0].endswith("_count")}
        # 3 steps for each order, 3 compensations for the rejected one (at least:
        # a redelivered attempt may run twice).
        assert total >= 12 and sum(counts.values()) == total, (total, counts)
        for (activity_type, outcome), n in counts.items():
            buckets = [s for s in latency["samples"] if s[0].endswith("_bucket")
                       and s[1]["activity_type"] == activity_type and s[1]["outcome"] == outcome]
            assert buckets[-1][1]["le"] == "+Inf" and buckets[-1][2] == n, buckets
        closed = {s[1]["outcome"]: s[2] for s in families["saga_engine_workflows_closed"]["samples"]
                  if s[1]["workflow_type"] == "shop-order"}
        assert closed["completed"] == 2 and closed["compensated"] == 1, closed
        # Started by `saga start`: counted by the worker that ran their first task.
        started = {s[1]["workflow_type"]: s[2] for s in families["saga_engine_workflows_started"]["samples"]}
        assert started == {"shop-order": 3}, started
        print(f"worker /metrics parsed: {total:.0f} attempts timed, closed {closed}", flush=True)
    finally:
        worker.terminate()
        code = worker.wait(timeout=30)
        delete_streams([f"SAGA_TASKS_{namespace}", f"SAGA_DLQ_{namespace}"])
        if shutil.which("psql"):
            subprocess.run(["psql", PG_URL, "-q", "-c", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
                           check=False, stdin=subprocess.DEVNULL,
                           env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"})
    if code != 0:
        sys.exit(f"the worker exited with {code} on SIGTERM")


def nats_address():
    url = urllib.parse.urlparse(NATS_URL)
    return url.hostname or "127.0.0.1", url.port or 4222


def nats_reachable():
    try:
        socket.create_connection(nats_address(), timeout=2).close()
        return True
    except OSError as e:
        if os.environ.get("CI"):
            sys.exit(f"NATS at {NATS_URL} is required (CI is set) but unreachable: {e}")
        print(f"SKIPPED the --nats part: NATS at {NATS_URL} is unreachable ({e})", flush=True)
        return False


def delete_streams(names):
    """Deletes JetStream streams with JetStream's API over the plain NATS protocol
    (one request per stream: `$JS.API.STREAM.DELETE.<name>`), so no NATS client
    package is needed."""
    with socket.create_connection(nats_address(), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()  # INFO
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.saga_api_check 1\r\n')
        for name in names:
            s.sendall(f"PUB $JS.API.STREAM.DELETE.{name} _INBOX.saga_api_check 0\r\n\r\n".encode())
            while True:
                line = f.readline()
                if not line:
                    sys.exit("NATS closed the connection while deleting test streams")
                if line.startswith(b"PING"):
                    s.sendall(b"PONG\r\n")
                elif line.startswith(b"-ERR"):
                    sys.exit(f"NATS refused a request: {line!r}")
                elif line.startswith(b"MSG"):
                    size = int(line.split()[-1])
                    reply = json.loads(f.read(size + 2)[:size])
                    if not reply.get("success"):
                        print(f"could not delete stream {name}: {reply}", flush=True)
                    else:
                        print(f"deleted stream {name}", flush=True)
                    break


# Runs inside the venv (where prometheus-client is): parses the text and prints the
# samples as JSON.
PARSE = """
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    families[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(families))
"""


def parse_metrics(py, url):
    """GET `url` and parse it with prometheus-client: {family: {type, samples}}."""
    with urllib.request.urlopen(url) as r:
        content_type = r.headers["Content-Type"]
        text = r.read().decode()
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    parsed = subprocess.run([py, "-c", PARSE], input=text, capture_output=True,
                            text=True, check=True).stdout
    return json.loads(parsed)


def check_metrics(py, base):
    families = parse_metrics(py, f"{base}/metrics")
    text = json.dumps(families)
    for name in ("saga_executions", "saga_outbox_tasks"):
        assert name in families, f"{name} missing from /metrics:\n{text}"
        assert families[name]["type"] == "gauge", families[name]
    counts = {
        (s[1]["workflow_type"], s[1]["status"]): s[2]
        for s in families["saga_executions"]["samples"]
    }
    # order_saga's two executions: one completed, one compensated after a rejection.
    assert counts[("order-saga", "Completed")] >= 1, counts
    assert counts[("order-saga", "Cancelled")] >= 1, counts
    statuses = {status for (_, status) in counts}
    assert statuses == {"Running", "Paused", "Completed", "Failed", "Compensating", "Cancelled"}, statuses
    print(f"/metrics parsed: {len(families)} families, executions {counts}", flush=True)
    return families


if __name__ == "__main__":
    main()
