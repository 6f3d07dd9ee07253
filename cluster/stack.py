"""The Pulumi program's body: read and validate the stack config, declare the cluster, export outputs.

Validation runs before the first resource is declared, so a bad config creates nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pulumi

from cluster.component import CitusCluster
from cluster.config import load_config
from cluster.config.sources import PROJECT, project_root, read_pulumi_config
from cluster.errors import ClusterError
from cluster.plan import build_plan
from cluster.provision.migrations import read_migrations
from cluster.secrets import REPOSITORY_KEYS


def build_dir(stack: str) -> Path:
    """Where the rendered Dockerfile is written for `docker build` (ignored by git)."""
    return project_root() / "build" / stack


def _local_cpus(raw: dict) -> int | None:
    """This machine's CPU count when Docker runs here (a remote host's count is not known before deploying)."""
    host = raw.get("dockerHost")
    return os.cpu_count() if not host or str(host).startswith("unix://") else None


def run() -> CitusCluster:
    """The program's edge: an error meant for a person (ClusterError) becomes Pulumi's one-line RunError."""
    try:
        return _declare()
    except ClusterError as exc:
        raise pulumi.RunError(str(exc)) from None


def _declare() -> CitusCluster:
    raw, secret_keys = read_pulumi_config()
    loaded = load_config(raw, secret_keys, host_cpus=_local_cpus(raw))
    config = pulumi.Config(PROJECT)
    supplied = {key: config.require_secret(key) for key in loaded.supplied_passwords}
    if loaded.config.backups.repository.type == "s3":  # validated: both keys are set as secrets
        supplied |= {key: config.require_secret(key) for key in REPOSITORY_KEYS}
    migrations = read_migrations(project_root() / "sql")
    cluster = CitusCluster("cluster", build_plan(loaded.config), supplied, build_dir(pulumi.get_stack()), migrations)
    for name, value in cluster.outputs.items():
        pulumi.export(name, value)
    return cluster
