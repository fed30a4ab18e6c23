#!/usr/bin/env bash
# What a step-like commit costs PostgreSQL, one part at a time, next to a one-row
# insert: each script in turn for ROUNDS rounds of SECONDS seconds, one client, then
# the mean latency per script. `CLIENTS=8` for throughput instead; `SCRIPTS="a b"` for
# other scripts of this folder (the outbox layout tried: `outbox_jsonb`, and in
# batches `batch_now batch_jsonb batch_none`, at most 4 clients; BENCHMARKS.md).
# Usage: bash saga-bench/pgbench/run.sh [database url]   (default: the bench's)
set -euo pipefail
cd "$(dirname "$0")"
url="${1:-postgres://postgres@127.0.0.1:5432/test}"
rounds="${ROUNDS:-5}" seconds="${SECONDS_EACH:-4}" clients="${CLIENTS:-1}"
psql -q "$url" -f setup.sql
read -r -a scripts <<<"${SCRIPTS:-raw step_event_rows step_event_batch step_no_outbox}"
for _ in $(seq "$rounds"); do
  for s in "${scripts[@]}"; do
    out="$(pgbench -n -M prepared -c "$clients" -j "$clients" -T "$seconds" -f "$s.sql" "$url" 2>&1)"
    echo "$s $(grep -oE 'latency average = [0-9.]+' <<<"$out" | awk '{print $4}') $(grep -oE 'tps = [0-9.]+' <<<"$out" | awk '{print $3}')"
  done
done | awk '{ms[$1] += $2; tps[$1] += $3; n[$1]++}
  END {for (s in ms) printf "%-18s %.3f ms  %.0f commits/s\n", s, ms[s] / n[s], tps[s] / n[s]}'
psql -q "$url" -c "SET client_min_messages = warning; DROP SCHEMA pgb CASCADE"
