#!/usr/bin/env bash
# Ingest through the any-node endpoint (issue 16): the scale benchmark's COPY streams through read-write (all
# parsing and routing on the coordinator's host) and through any-node (spread over every group's leader), on
# the same cluster one after the other, against the single node; hosts of 0.3 core, 1M rows, three repetitions
# (the order of the two loads alternates), then the 4-group 5M load with TLS that failed before batching and
# retries (benchmarks/results/scale-out/notes.md). Same prerequisites as ../run.sh.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
OUT=benchmarks/results/scale-out/ingest-any-node
COMMON=(--cpu-per-host 0.3 --repeat 10 --warmup 2 --clients 16 --duration 10)

flock /tmp/citus-heavy.lock .venv/bin/python -m benchmarks scale "${COMMON[@]}" --groups 0,4 --rows 1000000 \
    --load-via rw,any-node --out "$OUT/rep1"
flock /tmp/citus-heavy.lock .venv/bin/python -m benchmarks scale "${COMMON[@]}" --groups 4 --rows 5000000 \
    --load-via rw,any-node --out "$OUT/groups4-5m"
flock /tmp/citus-heavy.lock .venv/bin/python -m benchmarks scale "${COMMON[@]}" --groups 0,4 --rows 1000000 \
    --load-via any-node,rw --out "$OUT/rep2"
# The same stream count both ways (any-node's default is one per group leader, 5, read-write's --parallel 4):
flock /tmp/citus-heavy.lock .venv/bin/python -m benchmarks scale "${COMMON[@]}" --groups 4 --rows 1000000 \
    --load-via rw,any-node --parallel 5 --load-streams 5 --out "$OUT/streams5"
flock /tmp/citus-heavy.lock .venv/bin/python -m benchmarks scale "${COMMON[@]}" --groups 0,4 --rows 1000000 \
    --load-via rw,any-node --out "$OUT/rep3"
