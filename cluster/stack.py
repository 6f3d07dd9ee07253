"""The Pulumi program's body: read and validate the stack config, declare the cluster, export outputs.

Validation runs before the first resource is declared, so a bad config creates nothing.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from cluster.component import CitusCluster
from cluster.config import load_config
from cluster.config.sources import PROJECT, project_root, read_pulumi_config
from cluster.errors import ClusterError
from cluster.plan import build_plan
from cluster.provision.migrations import read_migrations


def build_dir(stack: str) -> Path:
    """Where the rendered Dockerfile is written for `docker build` (ignored by git)."""
    return project_root() / "build" / stack


def run() -> CitusCluster:
    """The program's edge: an error meant for a person (ClusterError) becomes Pulumi's one-line RunError."""
    try:
        return _declare()
    except ClusterError as exc:
        raise pulumi.RunError(str(exc)) from None


def _declare() -> CitusCluster:
    loaded = load_config(*read_pulumi_config())
    config = pulumi.Config(PROJECT)
    supplied = {key: config.require_secret(key) for key in loaded.supplied_passwords}
    migrations = read_migrations(project_root() / "sql")
    cluster = CitusCluster("cluster", build_plan(loaded.config), supplied, build_dir(pulumi.get_stack()), migrations)
    for name, value in cluster.outputs.items():
        pulumi.export(name, value)
    return cluster
