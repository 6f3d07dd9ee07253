#!/usr/bin/env bash
# Reproduces benchmarks/results/pgbouncer: on the harness's default cluster (coordinator pair + 2 worker pairs,
# coordinator max_connections 100, pooling on, TLS everywhere), load 20k seed rows, then
#  - clients served at once as the application role: straight to the coordinator leader's PostgreSQL vs through
#    HAProxy's read-write port (-> the leader's PgBouncer), 50 -> 1000 clients, each running radius 5 km + bbox;
#  - latency at 16 clients, the leader's PostgreSQL vs its PgBouncer, alternated in one run.
# As root, from the repository root, under the machine's heavy-run lock if it has one.
set -euo pipefail
rows="${ROWS:-20000}"
work=$(mktemp -d /tmp/citus-pgbouncer-XXXX); chmod 755 "$work"
trap '.venv/bin/python -m cluster local down --dir "$work/cluster" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT INT TERM
ulimit -n "$(ulimit -Hn)"  # a thousand clients: sockets in the client, HAProxy and PgBouncer
.venv/bin/python -m cluster local up --dir "$work/cluster" >/dev/null
.venv/bin/python -m cluster provision --harness "$work/cluster" >/dev/null
.venv/bin/python -m benchmarks pooling --harness "$work/cluster" --rows "$rows" --clients 50,100,250,500,1000 \
  --duration 30 --out benchmarks/results/pgbouncer
