#!/usr/bin/env bash
# Reproduces benchmarks/results/ha-tls: the ha/ drills (5 coordinator-leader kills, 5 worker-leader kills) on the
# default cluster, which now runs TLS on every link (ha/ was measured before TLS). As root, from the repository root.
set -euo pipefail
repeat="${REPEAT:-5}"
work=$(mktemp -d /tmp/citus-ha-tls-XXXX); chmod 755 "$work"
printf 'etcd: {members: 3}\n' > "$work/config.yaml"
trap '.venv/bin/python -m cluster local down --dir "$work/cluster" || true; rm -rf "$work"' EXIT
.venv/bin/python -m cluster local up --config "$work/config.yaml" --dir "$work/cluster" >/dev/null
.venv/bin/python -m cluster provision --harness "$work/cluster" >/dev/null
.venv/bin/python -m benchmarks ha --harness "$work/cluster" --repeat "$repeat" --out benchmarks/results/ha-tls
