"""Hosts of a fixed size for the local harness: every database member held to the same CPU quota, as if each ran
on a machine of its own with `cpus` cores (issue 16: the scale-out curve, "what a user buys by adding machines").

A host is a cgroup v1 group of the `cpu` controller (/sys/fs/cgroup/cpu/<name>) with cpu.cfs_quota_us /
cpu.cfs_period_us = cpus. Placement comes from the plan: one host per database member (as a container per
member in Docker), and on it every process of that member: Patroni, the postmaster and all its backends (they
inherit the group: Patroni enters it before it execs), the member's PgBouncer and its metrics exporter (both run
on the member's host in the plan). etcd and HAProxy are not database hosts and are not held.

The planning is pure (quota arithmetic, names, placement, messages); `create`, `remove` and `enter_argv`
are the thin I/O shell the harness calls.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import UsageError

CPU_ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000  # the kernel's default CFS period: 100 ms
MIN_QUOTA_US = 1_000  # the kernel refuses a quota below 1 ms
OPTION = "--cpu-per-host"
PREFIX = "citus"


class CpuHostError(UsageError):
    """The machine cannot hold members to a CPU quota, or the option asks for one it cannot give."""


@dataclass(frozen=True)
class CpuHost:
    """One emulated host: the cgroup its member's processes run in and the quota it gets."""

    member: str  # the database member placed on it (its PgBouncer and exporter go with it)
    group: str  # the cgroup's directory name under the cpu controller
    quota_us: int
    period_us: int = PERIOD_US

    @property
    def cpus(self) -> float:
        return self.quota_us / self.period_us


def quota_us(cpus: float, period_us: int = PERIOD_US) -> int:
    """cpu.cfs_quota_us for `cpus` cores per `period_us` (0.3 core -> 30000 of 100000). Rounded down, so a host
    never gets more than it was given; refused below the kernel's 1 ms minimum."""
    if not math.isfinite(cpus) or cpus <= 0:
        raise CpuHostError(f"{OPTION} must be a positive number of cores (e.g. 0.4), got {cpus}")
    quota = math.floor(cpus * period_us)
    if quota < MIN_QUOTA_US:
        raise CpuHostError(f"{OPTION} {cpus} gives a quota of {quota} us per {period_us} us period; the kernel "
                           f"needs at least {MIN_QUOTA_US} us: ask for at least {MIN_QUOTA_US / period_us:g} core")
    return quota


def check_size(cpus: float, machine_cpus: int) -> None:
    """A host larger than the machine is a quota that never binds: refuse it rather than measure nothing."""
    quota_us(cpus)
    if cpus > machine_cpus:
        raise CpuHostError(f"{OPTION} {cpus} is more than the {machine_cpus} CPUs of this machine: the quota would "
                           f"never hold; choose at most {machine_cpus}")


def group_name(tag: str, member: str) -> str:
    """The cgroup of `member`'s host: citus-<tag>-<member>. `tag` keeps two harnesses with the same member names
    (other worktrees run clusters too) out of each other's groups."""
    name = f"{PREFIX}-{tag}-{member}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or len(name) > 255:
        raise CpuHostError(f"cannot name a cgroup {name!r}: tag and member names must be letters, digits, '-', '_'")
    return name


def plan_hosts(members: list[str], cpus: float, tag: str, period_us: int = PERIOD_US) -> tuple[CpuHost, ...]:
    """One host of `cpus` cores per database member, in the plan's member order."""
    quota = quota_us(cpus, period_us)
    return tuple(CpuHost(member=m, group=group_name(tag, m), quota_us=quota, period_us=period_us) for m in members)


def host_of(hosts: tuple[CpuHost, ...], member: str) -> CpuHost | None:
    """The host member `member` (and its PgBouncer and exporter) runs on; None for etcd, HAProxy."""
    return next((h for h in hosts if h.member == member), None)


def unusable_message(root: Path, reason: str) -> str:
    """What to tell a user whose machine cannot give hosts a CPU quota, and how to go on."""
    return (f"{OPTION} needs the cgroup v1 cpu controller mounted and writable at {root} ({reason}). Mount it "
            f"(`mount -t cgroup -o cpu cgroup {root}`, as root), or run without {OPTION}: members then share the "
            f"machine's CPUs unbounded")


# ---- I/O shell --------------------------------------------------------------------------------------------
def require_controller(root: Path = CPU_ROOT) -> None:
    """Raise CpuHostError unless groups can be created under `root` with a quota."""
    if not (root / "cpu.cfs_quota_us").exists():
        raise CpuHostError(unusable_message(root, "no cpu.cfs_quota_us there"))
    if not os.access(root, os.W_OK):
        raise CpuHostError(unusable_message(root, "not writable by this user"))


def create(hosts: tuple[CpuHost, ...], root: Path = CPU_ROOT) -> None:
    """Make every host's group with its quota (idempotent: an existing group gets the quota again)."""
    require_controller(root)
    for host in hosts:
        path = root / host.group
        try:
            path.mkdir(exist_ok=True)
            (path / "cpu.cfs_period_us").write_text(str(host.period_us))
            (path / "cpu.cfs_quota_us").write_text(str(host.quota_us))
        except OSError as exc:
            raise CpuHostError(unusable_message(root, f"creating {path}: {exc.strerror or exc}")) from None


def read_quota(group: str, root: Path = CPU_ROOT) -> tuple[int, int]:
    """(quota_us, period_us) of a group as the kernel holds them."""
    path = root / group
    return int((path / "cpu.cfs_quota_us").read_text()), int((path / "cpu.cfs_period_us").read_text())


def pids_in(group: str, root: Path = CPU_ROOT) -> list[int]:
    try:
        return [int(p) for p in (root / group / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def remove(hosts: tuple[CpuHost, ...], root: Path = CPU_ROOT, timeout: float = 10.0) -> list[str]:
    """rmdir every host's group once it is empty (exiting backends leave it a moment after their postmaster is
    gone); returns the groups still there after `timeout` (a process nobody stopped holds them)."""
    deadline = time.monotonic() + timeout
    left = [h.group for h in hosts if (root / h.group).exists()]
    while left:
        for group in list(left):
            try:
                (root / group).rmdir()
                left.remove(group)
            except FileNotFoundError:
                left.remove(group)
            except OSError:
                pass  # EBUSY: still has processes
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    return left


def enter_argv(group: str, argv: list[str], root: Path = CPU_ROOT) -> list[str]:
    """`argv` started inside `group`: a shell writes its own PID into the group, then execs `argv` in place (the
    PID stays the server's, and every child it forks is born in the group). Needs write access to the group:
    run it as root and let `argv` switch users (setpriv), as the namespace wrapper does."""
    return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(root / group / "cgroup.procs"), *argv]
