"""A local cluster's state file: what `python -m cluster local up` started and how to reach it.

Written by the harness (cluster/local/harness.py), read by whoever is handed the directory later (the
harness's `down`, `python -m cluster provision --harness`, the benchmarks). It holds the cluster's passwords,
so it is private to its owner (0600).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cluster.errors import UsageError

STATE_FILE = "state.json"


def read_state(directory: Path) -> dict[str, Any]:
    path = Path(directory) / STATE_FILE
    if not path.exists():
        raise UsageError(f"{path} not found: is {directory} a local cluster's directory "
                         "(`python -m cluster local up`)?")
    return json.loads(path.read_text())


def write_state(directory: Path, state: dict[str, Any]) -> None:
    path = Path(directory) / STATE_FILE
    path.write_text(json.dumps(state, indent=2))
    os.chmod(path, 0o600)
