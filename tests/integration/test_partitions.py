"""Real network partitions: every member on a host of its own (network namespaces on a bridge), cut with nft.

One namespaced cluster (three etcd members) for the module. It first runs a representative subset of the
provisioning and HA tests unchanged (imported below, so they run here with this module's fixtures), then each
partition drill once. Every drill records its history and the checker's verdict is asserted: no acknowledged
write lost, none half-committed, one timeline at a time, no split-brain window, reads never back in time.
Bounds (issue 13): writes back within ttl + 5 s of a cut; the old leader rejoins as a replica by itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from benchmarks.ha import DrillResult, HarnessCluster, run_drill
from cluster.local import network
from cluster.local.harness import Harness, harness_config
from cluster.local.processes import wait_for
from cluster.provision import provision, read_migrations
from cluster.render.patroni import TTL
from tests.integration import test_ha, test_provisioning
from tests.integration.conftest import SQL_DIR, harness_missing, kept_clean

pytestmark = [pytest.mark.slow, pytest.mark.citus]
# Writes back within ttl + 5 s of a cut (issue 13). The coordinator leader's cut is the tight one: the lease
# expires <= ttl after the cut and Patroni's leader race waits out its fixed 2 s status request to the cut-off old
# leader before promoting (measured 22.2-22.9 s; docs/partitions.md).
PARTITION_BOUND = TTL + 5

# The same tests on the namespaced layout: pytest runs them here with this module's fixtures, in this order
# (provisioning first: it expects each group's first member to lead, which the HA drills change).
test_health_names_the_member_that_is_down = test_provisioning.test_health_names_the_member_that_is_down
test_provision_registers_every_group_and_applies_the_schema_once = (
    test_provisioning.test_provision_registers_every_group_and_applies_the_schema_once)
test_rows_land_on_every_worker_group_and_survive_scale_out_and_in = (
    test_provisioning.test_rows_land_on_every_worker_group_and_survive_scale_out_and_in)
test_coordinator_leader_kill_fails_over_and_loses_no_acknowledged_write = (
    test_ha.test_coordinator_leader_kill_fails_over_and_loses_no_acknowledged_write)
test_worker_leader_kill_repoints_pg_dist_node_and_loses_nothing = (
    test_ha.test_worker_leader_kill_repoints_pg_dist_node_and_loses_nothing)


def namespaces_missing() -> str | None:
    if reason := harness_missing():
        return reason
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in ("ip", "nft", "setpriv") if shutil.which(tool) is None]
    return f"the namespaced harness needs {', '.join(missing)} (.ci/run installs them)" if missing else None


@pytest.fixture(scope="module")
def namespaced() -> Iterator[Harness]:
    """The namespaced cluster; `down` (also on failure) removes its namespaces, bridge, route and rules."""
    if reason := namespaces_missing():
        if os.environ.get("CITUS_CLUSTER_REQUIRE_HARNESS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = Harness.create(harness_config({"etcd": {"members": 3}}), namespaces=True)
    net = cluster.plan.host_network
    assert net is not None
    try:
        cluster.up()
        provision(cluster.target, read_migrations(SQL_DIR))  # as `make up` leaves it, like the shared harness
        yield cluster
    finally:
        cluster.down()
        assert network.leftovers(net) == []


@pytest.fixture
def harness(namespaced: Harness) -> Iterator[Harness]:
    """The namespaced cluster, put back after each test as it found it (as the shared harness is)."""
    yield from kept_clean(namespaced)


@pytest.fixture(scope="module")
def drills(namespaced: Harness) -> HarnessCluster:
    return HarnessCluster(namespaced)


def test_every_member_runs_in_its_own_namespace_on_its_own_address(harness: Harness) -> None:
    net = harness.plan.host_network
    assert net is not None
    with psycopg.connect(harness.dsn()) as conn:  # through HAProxy in the root namespace
        registered = conn.execute("SELECT nodename FROM pg_dist_node WHERE noderole = 'primary'").fetchall()
    leaders = {harness.member(harness.leader(g)).host for g in range(len(harness.plan.groups))}
    assert {r[0] for r in registered} == leaders
    assert all(host.startswith(net.gateway.rsplit(".", 1)[0] + ".") for host in leaders)
    assert harness.procs[harness.plan.balancer.name].netns == ""  # HAProxy stays with the clients
    for host in net.hosts:  # the plan's hosts now (a group added and removed earlier left the plan)
        proc = harness.procs[host.name]
        assert proc.netns == host.namespace and proc.alive()
        assert os.readlink(f"/proc/{proc.pid}/ns/net") != os.readlink("/proc/self/ns/net")


def assert_history_clean(result: DrillResult) -> None:
    verdict = result.verdict
    assert verdict["valid"], verdict["problems"]
    assert result.acknowledged > 100 and result.lost == 0, result.summary()
    assert verdict["lost"] == 0 and verdict["half_committed"] == 0 and verdict["stale_reads"] == 0
    assert verdict["split_brain_window"] == 0.0 and verdict["timeline_overlap"] == 0.0


def assert_rejoined(drills: HarnessCluster, result: DrillResult, group: int) -> None:
    """One leader in the group, and the old one streams from it as a replica: nobody did anything by hand."""
    leaders = [m for m in drills.members(group) if drills.role(m) == "primary"]
    assert leaders == [result.new_leader], leaders
    streaming = wait_for(lambda: drills.state(result.victim).get("replication_state") == "streaming", 60)
    assert streaming and drills.role(result.victim) == "replica", drills.state(result.victim)


def no_prepared_transactions_left(drills: HarnessCluster) -> bool:
    for group in drills.groups():
        for member in drills.members(group):
            with psycopg.connect(drills.member_dsn(member), connect_timeout=5) as conn:
                if conn.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone() != (0,):
                    return False
    return True


def test_coordinator_leader_cut_from_etcd_and_standby_steps_down_before_another_is_promoted(
    drills: HarnessCluster,
) -> None:
    result = run_drill(drills, "partition-coordinator-leader")
    assert_history_clean(result)
    assert result.first_write_after is not None and result.first_write_after <= PARTITION_BOUND, result.summary()
    assert result.new_leader not in (None, result.victim)
    assert [n for n, _, _ in result.verdict["timelines"]][-1] == drills.h.member(result.new_leader).postgres.address
    assert_rejoined(drills, result, 0)


def test_worker_leader_cut_from_everything_fails_over_and_pg_dist_node_follows(drills: HarnessCluster) -> None:
    result = run_drill(drills, "partition-worker-leader")
    assert_history_clean(result)
    assert result.writes_all_ok_after <= PARTITION_BOUND, result.summary()
    assert result.new_leader not in (None, result.victim)
    assert_rejoined(drills, result, 1)
    with psycopg.connect(drills.rw_dsn) as conn:
        registered = conn.execute(
            "SELECT nodename, nodeport FROM pg_dist_node WHERE noderole = 'primary' AND groupid = 1").fetchone()
    assert registered == drills.address(result.new_leader)


def test_coordinator_cut_from_one_worker_group_fails_some_writes_and_half_commits_none(
    drills: HarnessCluster,
) -> None:
    result = run_drill(drills, "partition-coordinator-worker")
    assert_history_clean(result)
    assert result.new_leader == result.victim  # nobody failed over: etcd and the coordinator pair are fine
    during = result.phases["during failure"]
    assert 0.0 < during["write_success_pct"] < 100.0, result.summary()  # writes to the other group go on
    assert result.first_write_after_heal is not None and result.first_write_after_heal <= PARTITION_BOUND
    assert no_prepared_transactions_left(drills)


def test_etcd_quorum_loss_without_failsafe_demotes_the_leaders_and_heals(drills: HarnessCluster) -> None:
    result = run_drill(drills, "etcd-quorum-loss-failsafe-off")
    assert_history_clean(result)
    assert result.first_write_after_heal is not None and result.first_write_after_heal <= PARTITION_BOUND
    assert result.writes_all_ok_after >= TTL, result.summary()  # writes stopped while etcd had no quorum


def test_etcd_quorum_loss_with_failsafe_keeps_the_leaders_serving(drills: HarnessCluster) -> None:
    result = run_drill(drills, "etcd-quorum-loss-failsafe-on")
    assert_history_clean(result)
    # Leaders keep serving through the outage (a write in flight at the cut may still fail: >= 99 %).
    assert result.phases["during failure"]["write_success_pct"] >= 99.0, result.summary()
    assert not any(drills.role(m) is None for g in drills.groups() for m in drills.members(g))


def test_cleanup_from_the_state_file_removes_every_namespace_and_can_be_repeated() -> None:
    """A test that died after the network came up (no `down`): `local cleanup --dir` removes it all, twice."""
    if reason := namespaces_missing():
        pytest.skip(reason)
    where = Path(tempfile.mkdtemp(prefix="citus-harness-ns-")) / "cluster"
    where.parent.chmod(0o755)
    crashed = Harness.create(harness_config({"workers": {"groups": 1, "members": 1}}), where, namespaces=True)
    net = crashed.plan.host_network
    assert net is not None
    crashed.write_files()
    crashed.save()
    network.create(net)  # what `up` does first; then the test "dies"
    try:
        assert len(network.leftovers(net)) >= len(net.hosts) + 1
        root = Path(__file__).resolve().parents[2]
        for _ in range(2):
            done = subprocess.run([sys.executable, "-m", "cluster", "local", "cleanup", "--dir", str(where)],
                                  cwd=root, capture_output=True, text=True)
            assert done.returncode == 0 and '"cleaned": true' in done.stdout, done.stderr
            assert network.leftovers(net) == []
    finally:
        network.destroy(net)
        shutil.rmtree(where.parent, ignore_errors=True)
