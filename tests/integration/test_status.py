"""`python -m cluster status` on the real cluster: healthy says so (exit 0); a stopped standby and a killed worker
leader are named while they last (exit 1); once the member is back it reports healthy again."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from cluster.__main__ import main
from cluster.local.harness import Harness
from cluster.provision.target import local_target
from cluster.status import diagnose
from cluster.status.cli import format_screen
from cluster.status.diagnose import Diagnosis
from cluster.status.gather import gather

pytestmark = pytest.mark.citus
RECOVERY = 90.0  # a restarted member rejoins, HAProxy's checks rise (2 s) and Citus follows Patroni


def look(h: Harness) -> Diagnosis:
    facts = gather(local_target(h.base_dir))
    result = diagnose(facts)
    print(format_screen(facts, result))  # the sample output the issue asks for (pytest -s shows it)
    return result


def until(h: Harness, wanted: Callable[[Diagnosis], bool], timeout: float, what: str) -> Diagnosis:
    deadline = time.monotonic() + timeout
    while True:
        result = look(h)
        if wanted(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"status never showed {what} in {timeout:.0f} s; last findings: {result.findings}")
        time.sleep(1)


def errors(result: Diagnosis) -> list[str]:
    return [f"{f.subject}: {f.text}" for f in result.findings if f.severity == "error"]


def test_healthy_cluster_exits_0(harness: Harness, capsys: pytest.CaptureFixture) -> None:
    until(harness, lambda r: r.healthy, 30, "healthy")  # HAProxy's checks may still be rising after a restore
    assert main(["status", "--harness", str(harness.base_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("HEALTHY") and all(m.name in out for m in harness.plan.members)


def test_stopped_standby_is_named_until_it_is_back(harness: Harness) -> None:
    standby = next(m.name for m in harness.plan.groups[2] if m.name != harness.leader(2))
    harness.stop_member(standby)
    during = until(harness, lambda r: not r.healthy, 15, f"{standby} down")
    assert any(e.startswith(f"{standby}: down") for e in errors(during)), errors(during)
    assert any(e.startswith(f"group 2: no standby running ({standby} down)") for e in errors(during))
    assert main(["status", "--harness", str(harness.base_dir)]) == 1
    harness.start_member(standby)
    harness.wait_member(standby, "replica")
    until(harness, lambda r: r.healthy, RECOVERY, "healthy after the standby came back")


def test_killed_worker_leader_is_named_through_failover_and_after(harness: Harness) -> None:
    victim = harness.leader(1)
    harness.kill_member(victim)
    during = look(harness)
    assert f"{victim}: down" in " ".join(errors(during)), errors(during)
    after_failover = until(harness, lambda r: "group 1: no leader" not in " ".join(errors(r)), 60, "a new leader")
    assert any(e.startswith(f"{victim}: down") for e in errors(after_failover))  # still down: still named
    harness.start_member(victim)
    harness.wait_member(victim, "replica")
    until(harness, lambda r: r.healthy, RECOVERY, "healthy after the old leader rejoined")
    assert harness.leader(1) != victim
