"""Hosts of a fixed size on a real tiny cluster: every process of a member (Patroni, postmaster, backends, the
coordinator's PgBouncer, the exporter) lands in that member's cpu cgroup with the asked quota, a member restarted
by a drill lands there again, nothing else does, and `down` removes the groups."""

from __future__ import annotations

import psycopg
import pytest

from cluster.local import cpuhosts, processes
from tests.integration.conftest import harness_missing

pytestmark = [pytest.mark.slow, pytest.mark.citus]

TINY = {"coordinator": {"members": 1}, "workers": {"groups": 1, "members": 1}, "etcd": {"members": 1}}


@pytest.fixture
def controller() -> None:
    if harness_missing():
        pytest.skip(harness_missing())
    try:
        cpuhosts.require_controller()
    except cpuhosts.CpuHostError as exc:
        pytest.skip(str(exc))


def test_members_run_in_their_hosts_and_down_removes_them(controller: None) -> None:
    from cluster.local.harness import Harness, harness_config

    harness = Harness.create(harness_config(TINY, 0.3), cpu_per_host=0.3)
    try:
        harness.up()
        hosts = harness.cpu_hosts
        assert [h.member for h in hosts] == [m.name for m in harness.plan.members]
        for host in hosts:
            assert cpuhosts.read_quota(host.group) == (30_000, 100_000)
        with psycopg.connect(harness.target.rw_dsn) as conn:  # a backend forked after start inherits the group
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            assert conn.execute("SELECT current_setting('jit')").fetchone()[0] == "off"
            coordinator = harness.plan.coordinators[0].name
            group = cpuhosts.host_of(hosts, coordinator).group
            inside = set(cpuhosts.pids_in(group))
            postmaster = harness.postmaster_pid(coordinator)
            assert {harness.procs[coordinator].pid, postmaster, backend} <= inside
            assert set(processes.children(postmaster)) <= inside  # every backend and auxiliary process
            assert harness.procs[f"{coordinator}-pgbouncer"].pid in inside
            assert harness.procs[f"{coordinator}-exporter"].pid in inside
        everywhere = {pid for h in hosts for pid in cpuhosts.pids_in(h.group)}
        assert harness.procs[harness.plan.balancer.name].pid not in everywhere  # HAProxy is no database host
        assert harness.procs[harness.plan.etcd[0].name].pid not in everywhere
        worker = harness.plan.groups[1][0].name
        harness.kill_member(worker)  # a drill's restart puts the member back on its host
        harness.start_member(worker)
        harness.wait_member(worker, "primary")
        worker_group = cpuhosts.host_of(hosts, worker).group
        assert {harness.procs[worker].pid, harness.postmaster_pid(worker)} <= set(cpuhosts.pids_in(worker_group))
    finally:
        groups = [h.group for h in harness.cpu_hosts]
        harness.down()
    assert not [g for g in groups if (cpuhosts.CPU_ROOT / g).exists()]
