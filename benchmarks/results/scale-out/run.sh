#!/usr/bin/env bash
# The scale-out curve (issue 16 item 2), exactly as committed here. Needs root (cgroup v1 cpu controller at
# /sys/fs/cgroup/cpu, writable) and the real-process harness (PostgreSQL 15 + Citus + PostGIS, etcd, HAProxy,
# PgBouncer). Every system is brought up on hosts of 0.3 core each, loaded, measured and taken down again by
# the benchmark itself (cluster directories under /tmp/s16-scale-*; cgroups citus-<tag>-<member>).
#
# 0.3 core: a coordinator and 4 worker hosts hold 1.5 of the machine's 2 cores; the rest is left to the client
# (16 threads receiving the rows), HAProxy and etcd, which are not held to a quota.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=benchmarks/results/scale-out

# The curve on 1M rows: single node (0), 4, 2 and 1 worker groups, one member each.
flock /tmp/citus-heavy.lock .venv/bin/python -m benchmarks scale --cpu-per-host 0.3 --groups 0,4,2,1 \
    --rows 1000000 --repeat 10 --warmup 2 --clients 16 --duration 10 --out "$OUT"

# The data curve: 5M rows for the single node and 4 worker groups (if time allows; see report.md).
flock /tmp/citus-heavy.lock .venv/bin/python -m benchmarks scale --cpu-per-host 0.3 --groups 0,4 \
    --rows 5000000 --repeat 10 --warmup 2 --clients 16 --duration 10 --out "$OUT"

# The 4-group 5M run above failed in its COPY with TLS (see notes.md); the same run without TLS (measurement
# switch), kept apart because the single node it would be compared with ran with TLS:
flock /tmp/citus-heavy.lock .venv/bin/python -m benchmarks scale --cpu-per-host 0.3 --groups 4 \
    --rows 5000000 --repeat 10 --warmup 2 --clients 16 --duration 10 --no-tls --out "$OUT/no-tls-5m"
