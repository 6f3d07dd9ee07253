"""Real-process test harness: the rendered cluster as local processes. See cluster.py; CLI in __main__.py."""

from tests.harness.cluster import (
    DEFAULT_CONFIG,
    Harness,
    citus_missing,
    harness_config,
    local_postgres,
)
from tests.harness.processes import HarnessError

__all__ = ["DEFAULT_CONFIG", "Harness", "HarnessError", "citus_missing", "harness_config", "local_postgres"]
