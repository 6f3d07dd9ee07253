#!/usr/bin/env bash
# Issue 16, shared box: the defaults step as in ../spatial-1m-anynode (the seed's 5 km query as shipped / tuned /
# tuned + spatial order, cluster = coordinator pair + 2 worker pairs, 12 shards, vs a single node, also through the
# any-node endpoint), then, on the same ordered data, the cpu step: CPU per query charged to each process, both
# sides in turn (3 rounds of 20 queries on one connection each). Uniform data. Exactly what produced this directory.
set -euo pipefail
cd "$(dirname "$0")/../../.."   # the repository root
python() { "${PY:-.venv/bin/python}" "$@"; }
D=${D:-/tmp/cpu16}
mkdir -p "$D" && chmod 755 "$D"
python -m cluster local up --dir "$D/run" > "$D/up.json"
python -m cluster provision --harness "$D/run"
printf 'coordinator: {members: 1}\nworkers: {groups: 1, members: 1}\n' > "$D/single.yaml"
python -m cluster local up --config "$D/single.yaml" --dir "$D/single" --no-citus > "$D/single-up.json"
read -r SINGLE ANY < <(python - "$D/single" "$D/run" <<'PY'
import sys
from cluster.local.harness import Harness
single, run = Harness.load(sys.argv[1]), Harness.load(sys.argv[2])
print(single.member_dsn(single.plan.groups[0][0].name), run.dsn("any-node"))
PY
)
python -m benchmarks run --harness "$D/run" --steps defaults,cpu --rows 1000000 --compare-datasets uniform \
    --clients 16 --warmup 2 --repeat 10 --duration 8 --baseline-dsn "$SINGLE" --any-node-dsn "$ANY" \
    --out benchmarks/results/spatial-1m-cpu
python -m cluster local down --dir "$D/single"
python -m cluster local down --dir "$D/run"
