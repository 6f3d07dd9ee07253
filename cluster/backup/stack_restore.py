"""Restore a deployed Docker stack in place to one restore point: the harness's in-place restore
(cluster.backup.restore) with Docker commands where the harness uses local processes and files.

Every step is the harness's, in the same order, so what the real-process test rehearses is what runs here:
settle the point and each group's backup from the repository (pgBackRest through `docker exec`, as `backup`
does); confirm; stop every member container (replicas first); move each data directory aside inside its own
volume (a throwaway container of the member's image; kept, never deleted); delete each group's keys in etcd
(etcdctl in the first etcd container, with that member's client certificate); put a Patroni config that
bootstraps from the repository into each stopped container (`docker cp`); start the members and wait for a
healthy cluster; put the rendered config back and have Patroni reread it (SIGHUP, Patroni is the container's
PID 1); bring pg_dist_node to the new leaders; mark the points left on the old timeline; count rows.

The containers, volumes and their Pulumi state stay as they were: the stack is not redeployed, and `make up`
afterwards changes nothing (the uploads' content is what the stack rendered; the container only held another
config while it bootstrapped).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cluster.backup import BackupScope
from cluster.backup.restore import (
    RestoreChoice,
    RestoreReport,
    aside_stamp,
    bootstrap_overrides,
    choose,
    in_place_plan,
    mark_left,
    reregister,
    row_counts,
)
from cluster.backup.runner import BackupError, DockerCli
from cluster.errors import ClusterError
from cluster.plan import DOCKER_DATA_MOUNT, Member, Plan
from cluster.provision.health import wait_healthy
from cluster.render import pgbackrest
from cluster.render.etcd import etcd_client_flags
from cluster.render.patroni import config_path, dcs_prefix, render_patroni, render_patroni_with

log = logging.getLogger("cluster.backup")

ETCDCTL = "/usr/local/bin/etcdctl"  # in the etcd image (its health check runs the same)
STOP_SECONDS = 60  # `docker stop` grace: Patroni stops PostgreSQL with a checkpoint first


class Docker(Protocol):
    """Runs one docker CLI command (`args` after `docker`), returns its stdout; raises BackupError on failure."""

    def __call__(self, *args: str, timeout: float = 120.0) -> str: ...


def stop_order(plan: Plan) -> list[str]:
    """Replicas first (highest index), so no group fails over to a member about to stop."""
    return [m.name for m in sorted(plan.members, key=lambda m: -m.index)]


def move_aside(member: Member, image: str, moved: str) -> list[str]:
    """A throwaway container of the member's image, on its volume, as the server user, no network: renames the
    data directory to `moved` (a member whose directory is missing is left as it is)."""
    return ["run", "--rm", "--network", "none", "--user", "postgres",
            "--volume", f"{member.volume}:{DOCKER_DATA_MOUNT}", "--entrypoint", "/bin/sh", image,
            "-c", 'if [ -e "$1" ]; then mv "$1" "$2"; fi', "move-aside", member.data_dir, moved]


def forget_group(plan: Plan, group: int) -> list[str]:
    """Group `group`'s keys in etcd deleted (as the harness's forget_group), so its next start bootstraps it."""
    etcd = plan.etcd[0]
    return ["exec", etcd.name, ETCDCTL, *etcd_client_flags(etcd), "del", "--prefix", dcs_prefix(plan, group)]


def restore_stack_in_place(scope: BackupScope, stack: str, point: str | None = None, at: datetime | None = None,
                           confirm: Callable[[str], None] | None = None, timeout: float = 900.0,
                           docker: Docker | None = None) -> RestoreReport:
    """Restore the Docker stack `stack` (its plan and target in `scope`) itself to one point."""
    plan, target = scope.plan, scope.target
    run = docker or DockerCli(plan.config.docker_host)
    choice = choose(scope, point, at)
    stamp = aside_stamp()
    aside = {m.name: f"{m.data_dir}.before-restore-{stamp}" for m in plan.members}
    if confirm is not None:
        confirm(in_place_plan(f"the Docker stack {stack!r}", plan, choice,
                              {f"{m.volume}:{m.data_dir}": aside[m.name] for m in plan.members}))
    images = {m.name: run("inspect", "--format", "{{.Image}}", m.name).strip() for m in plan.members}
    started = time.monotonic()
    log.info("restoring stack %s in place to %s: stopping every member", stack, choice.point.name)
    run("stop", "--time", str(STOP_SECONDS), *stop_order(plan), timeout=STOP_SECONDS * len(plan.members) + 60)
    try:
        for m in plan.members:
            run(*move_aside(m, images[m.name], aside[m.name]))
        for group in range(len(plan.groups)):
            run(*forget_group(plan, group))
        overrides = bootstrap_overrides(plan, pgbackrest.repo_path(plan), choice)
        _put_configs(run, plan.members, lambda m: render_patroni_with(plan, m, overrides[m.name]))
        log.info("data directories moved aside (<volume>:<data dir>.before-restore-%s); every group bootstraps "
                 "from the repository", stamp)
        run("start", *[m.name for m in sorted(plan.members, key=lambda m: m.index)])
        wait_healthy(target, timeout=timeout)
        sidecars = [name for m in plan.members for name in plan.sidecars(m)]
        if sidecars:  # their network namespace was the stopped members'
            run("restart", *sidecars)
        _put_configs(run, plan.members, lambda m: render_patroni(plan, m))
        run("kill", "--signal", "HUP", *[m.name for m in plan.members])  # Patroni rereads its config
        report = _settle(scope, choice, started, stack)
    except (ClusterError, OSError) as exc:
        kept = "; ".join(f"{m.name}: {m.volume}:{aside[m.name]}" for m in plan.members)
        raise BackupError(f"in-place restore of stack {stack!r} to {choice.point.name!r} failed: {exc}\nNothing "
                          f"was deleted: each member's data directory as it was is kept in its volume ({kept}). To "
                          "go back: `docker stop` the members, move each back to "
                          f"{plan.members[0].data_dir} in its volume (a container of the member's image with the "
                          "volume mounted, as this restore moved it), then `docker start` them.") from exc
    report.moved_aside = {m.name: f"{m.volume}:{aside[m.name]}" for m in plan.members}
    return report


def _put_configs(run: Docker, members: Sequence[Member], text: Callable[[Member], str]) -> None:
    """Patroni's config file of each member replaced by `text(member)` (`docker cp` also works on a stopped
    container; the file is credential-free: the secrets are a file of their own)."""
    with tempfile.TemporaryDirectory(prefix="citus-restore-") as scratch:
        for m in members:
            local = Path(scratch) / f"{m.name}.yml"
            local.write_text(text(m))
            local.chmod(0o644)
            run("cp", str(local), f"{m.name}:{config_path(m)}")


def _settle(scope: BackupScope, choice: RestoreChoice, started: float, stack: str) -> RestoreReport:
    report = RestoreReport(choice.point, f"stack {stack}", 0.0, backup_sets=choice.backup_sets, notes=choice.notes)
    report.nodes, report.problems = reregister(scope.target)
    report.seconds = time.monotonic() - started
    report.row_counts = row_counts(scope.target.rw_dsn)
    mark_left(scope, choice.point, report)
    return report

