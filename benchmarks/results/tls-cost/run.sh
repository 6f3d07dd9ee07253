#!/usr/bin/env bash
# Reproduces benchmarks/results/tls-cost: the seed's workload (200k rows: load, the timed queries, 1-64 clients) on
# the default cluster (TLS on every link, verify-full) and then on the same shape with TLS optional (`--no-tls`,
# a measurement switch only), back to back on one box. As root, from the repository root.
set -euo pipefail
rows="${ROWS:-200000}"
work=$(mktemp -d /tmp/citus-tls-cost-XXXX); chmod 755 "$work"
printf 'etcd: {members: 3}\n' > "$work/config.yaml"
trap 'for d in "$work"/tls "$work"/no-tls; do [ -d "$d" ] && .venv/bin/python -m cluster local down --dir "$d"; done; rm -rf "$work"' EXIT
for variant in tls no-tls; do
  flag=""; [ "$variant" = no-tls ] && flag="--no-tls"
  .venv/bin/python -m cluster local up $flag --config "$work/config.yaml" --dir "$work/$variant" >/dev/null
  .venv/bin/python -m cluster provision --harness "$work/$variant" >/dev/null
  .venv/bin/python -m benchmarks run --harness "$work/$variant" --rows "$rows" --steps load,queries,concurrency \
    --repeat 10 --clients 1,8,16 --duration 5 --out "benchmarks/results/tls-cost/$variant"
  .venv/bin/python -m cluster local down --dir "$work/$variant" >/dev/null
done
