#!/usr/bin/env bash
# Reproduces benchmarks/results/partitions: 5 drills of each partition scenario on a namespaced local cluster
# (every member and etcd member a host of its own), as root, from the repository root, one cluster at a time.
set -euo pipefail
repeat="${REPEAT:-5}"
work=$(mktemp -d /tmp/citus-partitions-XXXX); chmod 755 "$work"
printf 'etcd: {members: 3}\n' > "$work/config.yaml"
trap '.venv/bin/python -m cluster local down --dir "$work/cluster" || true; rm -rf "$work"' EXIT
.venv/bin/python -m cluster local up --namespaces --config "$work/config.yaml" --dir "$work/cluster" >/dev/null
.venv/bin/python -m cluster provision --harness "$work/cluster" >/dev/null
.venv/bin/python -m benchmarks ha --harness "$work/cluster" --repeat "$repeat" --out benchmarks/results/partitions \
  --scenario partition-coordinator-leader --scenario partition-worker-leader \
  --scenario partition-coordinator-worker --scenario etcd-quorum-loss-failsafe-off \
  --scenario etcd-quorum-loss-failsafe-on
