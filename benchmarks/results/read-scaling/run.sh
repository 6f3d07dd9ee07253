#!/usr/bin/env bash
# Reproduces benchmarks/results/read-scaling: read throughput through the standbys (read-only endpoint: a
# coordinator standby, shards on the workers' standbys) vs the leader (read-write endpoint) at 16 clients, same
# run, on 200k rows; and the staleness a reader on the standbys sees while the load step's COPY writes.
# The harness's default shape (coordinator pair + 2 worker pairs, one etcd); everything on this one box.
# As root, from the repository root; take the heavy-run lock around it on a shared machine.
set -euo pipefail
rows="${ROWS:-200000}"
work=$(mktemp -d /tmp/citus-read-scaling-XXXX); chmod 755 "$work"
trap '.venv/bin/python -m cluster local down --dir "$work/c" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
.venv/bin/python -m cluster local up --dir "$work/c" >/dev/null
.venv/bin/python -m cluster provision --harness "$work/c" >/dev/null
.venv/bin/python -m benchmarks run --harness "$work/c" --rows "$rows" --steps load,reads \
  --concurrency-queries radius_5km,bbox,knn_10,vehicle_track --read-clients 16 --duration 10 \
  --out benchmarks/results/read-scaling
