#!/usr/bin/env bash
# Issue 16's "Done when" comparison (benchmarks/results/spatial-1m-tuned), as run on the shared 2-core box.
# The harness's default cluster (coordinator pair + 2 worker pairs, the dev stack's 12 shards; settings derived
# by cluster/tuning.py), and a single PostGIS node from the same harness without Citus. The single node is
# reached on its PostgreSQL port (not its PgBouncer): the defaults step sets its session settings as startup
# options, which PgBouncer refuses.
set -euo pipefail
cd "$(dirname "$0")/../../.."   # the repository root
python() { "${PY:-.venv/bin/python}" "$@"; }
D=${D:-/tmp/order16}
mkdir -p "$D" && chmod 755 "$D"
python -m cluster local up --dir "$D/run" > "$D/up.json"
python -m cluster provision --harness "$D/run"
printf 'coordinator: {members: 1}\nworkers: {groups: 1, members: 1}\n' > "$D/single.yaml"
python -m cluster local up --config "$D/single.yaml" --dir "$D/single" --no-citus > "$D/single-up.json"
SINGLE=$(python - "$D/single" <<'PY'
import sys
from cluster.local.harness import Harness
h = Harness.load(sys.argv[1])
print(h.member_dsn(h.plan.groups[0][0].name))
PY
)
python -m benchmarks run --harness "$D/run" --steps defaults --rows 1000000 --compare-datasets uniform,skewed \
    --clients 16 --warmup 2 --repeat 10 --duration 8 --baseline-dsn "$SINGLE" \
    --out benchmarks/results/spatial-1m-tuned
python -m cluster local down --dir "$D/single"
python -m cluster local down --dir "$D/run"
