"""The Docker side of the HA drills, without Docker: which containers and commands a drill would touch."""

from __future__ import annotations

import pytest

from benchmarks import ha
from cluster.config import load_config
from cluster.errors import UsageError
from cluster.plan import build_plan


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    seen: list[tuple[str, ...]] = []
    monkeypatch.setattr(ha, "_docker", lambda *args: seen.append(args))
    return seen


def test_docker_drills_act_on_the_planned_containers(calls: list[tuple[str, ...]]) -> None:
    plan = build_plan(load_config({}).config)
    cluster = ha.DockerCluster(plan, "postgresql://rw", "postgresql://ro")
    assert cluster.members(1) == ["citus-worker1-0", "citus-worker1-1"]
    assert cluster.address("citus-worker1-0") == ("citus-worker1-0", 5432)  # what pg_dist_node registers
    cluster.kill("citus-coordinator-0")
    cluster.restart("citus-coordinator-0")
    cluster.crash_postgres("citus-worker1-0")
    cluster.restart_balancer()
    assert cluster.kill_etcd() == "citus-etcd-2"
    cluster.switchover(1, "citus-worker1-0")
    cluster.freeze("citus-coordinator-0")
    cluster.thaw("citus-coordinator-0")
    assert calls[0] == ("kill", "citus-coordinator-0") and calls[1] == ("start", "citus-coordinator-0")
    assert calls[2][:2] == ("exec", "citus-worker1-0")
    assert "/var/lib/postgresql/data/pgdata/postmaster.pid" in calls[2][-1]
    assert calls[3] == ("restart", "citus-haproxy") and calls[4] == ("kill", "citus-etcd-2")
    assert calls[5] == ("exec", "citus-worker1-0", "/opt/patroni/bin/patronictl", "-c", "/etc/patroni", "switchover",
                        "--group", "1", "--leader", "citus-worker1-0", "--force")
    assert calls[6:] == [("pause", "citus-coordinator-0"), ("unpause", "citus-coordinator-0")]


def test_unknown_scenarios_are_refused_before_anything_happens(calls: list[tuple[str, ...]]) -> None:
    cluster = ha.DockerCluster(build_plan(load_config({}).config), "postgresql://rw", "postgresql://ro")
    with pytest.raises(UsageError, match="unknown scenario 'reboot'; expected one of coordinator-leader-kill"):
        ha.run_drill(cluster, "reboot")
    assert calls == []
