"""Wait until the cluster can take work: every group led, every standby streaming, rw DSN answering.

Bounded and explicit (testcontainers style): on time-out the error lists exactly which members and groups
are not ready and the last error seen for each, so nobody has to go digging in container logs first.
"""

from __future__ import annotations

import logging
import urllib.error
from dataclasses import dataclass, field
from typing import Any

import psycopg
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from cluster.errors import ClusterError
from cluster.provision.rest import rest_json, role
from cluster.provision.target import ClusterTarget, MemberTarget

log = logging.getLogger("cluster.provision")


@dataclass
class HealthReport:
    leaders: dict[int, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems


class _NotReady(Exception):
    """Internal: one look found problems; tenacity retries on it, and it never leaves this module."""

    def __init__(self, report: HealthReport) -> None:
        super().__init__("; ".join(report.problems))
        self.report = report


class ClusterNotHealthy(ClusterError):
    """Raised when the wait runs out; the message lists every member or group still not ready."""


def member_state(member: MemberTarget, ca_file: str | None, timeout: float = 2.0) -> dict[str, Any]:
    """Patroni's own view of a member (GET /patroni): state, role, replication_state, ..."""
    return rest_json(f"{member.patroni_url}/patroni", timeout, ca_file)


def check(target: ClusterTarget) -> HealthReport:
    """One look at the whole cluster, no waiting."""
    report = HealthReport()
    for group in target.groups:
        for member in target.members_of(group):
            try:
                state = member_state(member, target.ca_file)
            except (OSError, urllib.error.URLError, ValueError) as exc:
                report.problems.append(f"{member.name} (group {group}): Patroni REST unreachable: {exc}")
                continue
            if state.get("state") != "running":
                report.problems.append(f"{member.name} (group {group}): PostgreSQL is {state.get('state')!r}")
            elif role(state) == "primary":
                report.leaders[group] = member.name
            elif state.get("replication_state") not in (None, "streaming"):
                report.problems.append(
                    f"{member.name} (group {group}): replica is {state.get('replication_state')!r}, not streaming"
                )
        if group not in report.leaders:
            report.problems.append(f"group {group}: no leader")
    if not report.problems:
        try:
            with psycopg.connect(target.rw_dsn, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            report.problems.append(f"read-write DSN (HAProxy -> coordinator leader): {exc}".strip())
    return report


def wait_healthy(target: ClusterTarget, timeout: float = 180.0, interval: float = 1.0) -> HealthReport:
    """Return the first healthy report, or raise ClusterNotHealthy after `timeout` seconds."""

    def attempt() -> HealthReport:
        report = check(target)
        if not report.healthy:
            log.info("waiting for the cluster: %s", "; ".join(report.problems))
            raise _NotReady(report)
        return report

    try:
        for retry in Retrying(
            stop=stop_after_delay(timeout), wait=wait_fixed(interval), retry=retry_if_exception_type(_NotReady)
        ):
            with retry:
                report = attempt()
        log.info("cluster healthy: leaders %s", report.leaders)
        return report
    except RetryError as exc:
        last = exc.last_attempt.exception()
        problems = last.report.problems if isinstance(last, _NotReady) else [repr(last)]
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ClusterNotHealthy(f"cluster not healthy after {timeout:.0f} s; still not ready:\n{lines}") from None
