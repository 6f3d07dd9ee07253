"""Fixtures that start the real-process harness (cluster/local) once and share it.

Where the harness cannot run (a laptop without PostgreSQL, etcd or HAProxy) its tests skip with the reason;
CI sets CITUS_CLUSTER_REQUIRE_HARNESS=1 so a broken install fails there instead of skipping. Tests marked
`citus` skip, with the reason, where the citus extension is not installed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.local.harness import Harness, citus_missing, harness_config, local_postgres
from cluster.local.processes import HarnessError

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def harness_missing() -> str | None:
    """Why the harness cannot run on this machine, or None."""
    missing = [tool for tool in ("etcd", "haproxy") if shutil.which(tool) is None]
    try:
        local_postgres()
    except HarnessError:
        missing.append("postgresql-15")
    if not missing:
        return None
    return f"the real-process harness needs {', '.join(missing)} (.ci/run installs them)"


def citus_skip_reason() -> str | None:
    if reason := harness_missing():
        return reason
    return citus_missing(local_postgres()[0])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = citus_skip_reason()
    if reason is None:
        return
    for item in items:
        if "citus" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=f"Citus test skipped: {reason}"))


def start_harness(overrides: dict | None = None) -> Harness:
    reason = harness_missing()
    if reason:
        if os.environ.get("CITUS_CLUSTER_REQUIRE_HARNESS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return Harness.create(harness_config(overrides)).up()


@pytest.fixture(scope="session")
def harness() -> Iterator[Harness]:
    """The default harness cluster (coordinator pair, two worker pairs, one etcd), shared by the session.

    Tests that change it (stop a member, add a group) put it back as they found it.
    """
    cluster = start_harness()
    try:
        yield cluster
    finally:
        cluster.down()
