"""The rendered alert rules on a real Prometheus scraping the real cluster: stopping a standby raises
CitusGroupWithoutStandby and CitusMemberDown; killing a worker leader raises CitusLeaderChanged; once the members
are back the member and standby alerts resolve."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.local.harness import Harness
from tests.support.prometheus import running_prometheus

pytestmark = [pytest.mark.citus, pytest.mark.slow]


@pytest.fixture
def prometheus(harness: Harness, tmp_path: Path) -> Iterator[str]:
    with running_prometheus(harness, tmp_path) as url:
        yield url


def firing(url: str) -> set[tuple[str, str]]:
    """(alert, group or member) of every firing alert."""
    with urllib.request.urlopen(f"{url}/api/v1/alerts", timeout=5) as response:
        alerts = json.loads(response.read())["data"]["alerts"]
    return {(a["labels"]["alertname"], a["labels"].get("member") or a["labels"].get("citus_group", ""))
            for a in alerts if a["state"] == "firing"}


def until(url: str, wanted, timeout: float, what: str) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        now = firing(url)
        if wanted(now):
            return now
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s; firing: {sorted(now)}"
        time.sleep(1)


def test_standby_and_leader_drills_fire_their_alerts_and_recover(harness: Harness, prometheus: str) -> None:
    until(prometheus, lambda f: not any(name != "CitusLeaderChanged" for name, _ in f), 60, "a quiet start")
    standby = next(m.name for m in harness.plan.groups[2] if m.name != harness.leader(2))
    harness.stop_member(standby)
    found = until(prometheus, lambda f: ("CitusGroupWithoutStandby", "2") in f and ("CitusMemberDown", standby) in f,
                  90, "the standby alerts")
    assert ("CitusGroupWithoutLeader", "2") not in found
    harness.start_member(standby)
    harness.wait_member(standby, "replica")
    until(prometheus, lambda f: not {("CitusGroupWithoutStandby", "2"), ("CitusMemberDown", standby)} & f, 90,
          "the standby alerts to resolve")

    victim = harness.leader(1)
    harness.kill_member(victim)
    until(prometheus, lambda f: ("CitusLeaderChanged", "1") in f and ("CitusMemberDown", victim) in f, 90,
          "the leader-change alert")
    harness.start_member(victim)
    harness.wait_member(victim, "replica")
    found = until(prometheus, lambda f: ("CitusMemberDown", victim) not in f and ("CitusGroupWithoutStandby", "1")
                  not in f, 90, "the member alert to resolve")
    assert ("CitusLeaderChanged", "1") in found  # stays for its window, then resolves by itself
