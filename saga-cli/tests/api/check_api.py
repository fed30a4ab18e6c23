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
  counts the store holds.

Usage: python3 saga-cli/tests/api/check_api.py  (from anywhere; uses cargo's target
dir, so CARGO_TARGET_DIR is honoured). Exits non-zero on any failure.
"""

import json
import os
import subprocess
import sys
import tempfile
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
# Pinned: a new release may add checks or change the CLI; bump deliberately.
PACKAGES = ["schemathesis==4.32.5", "prometheus-client==0.26.0"]
CHECKS_EXCLUDED = "positive_data_acceptance"


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
             "-p", "examples", "--bin", "order_saga"], cwd=REPO)
        bins = os.path.join(target_dir(), "debug")
        db = os.path.join(work, "saga.db")
        run([os.path.join(bins, "order_saga")], cwd=REPO,
            env={**os.environ, "SAGA_DB": db}, stdout=subprocess.DEVNULL)

        server = subprocess.Popen(
            [os.path.join(bins, "saga"), "--store", f"sqlite://{db}",
             "serve", "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, text=True,
        )
        first = server.stdout.readline().strip()
        prefix = "listening on "
        if not first.startswith(prefix):
            sys.exit(f"saga serve did not start: {first!r}")
        base = first[len(prefix):]
        print(f"saga serve at {base}", flush=True)

        check_metrics(py, base)
        schemathesis = os.path.join(venv, "bin", "schemathesis")
        run([schemathesis, "run", f"{base}/openapi.json",
             "--checks", "all", "--exclude-checks", CHECKS_EXCLUDED,
             "--max-time", "60", "--no-color"], cwd=work)
        # The fuzzing started and signalled executions: the metrics still parse.
        check_metrics(py, base)
        print("API check passed", flush=True)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["rm", "-rf", work], check=False)


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


def check_metrics(py, base):
    with urllib.request.urlopen(f"{base}/metrics") as r:
        content_type = r.headers["Content-Type"]
        text = r.read().decode()
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    parsed = subprocess.run([py, "-c", PARSE], input=text, capture_output=True,
                            text=True, check=True).stdout
    families = json.loads(parsed)
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


if __name__ == "__main__":
    main()
