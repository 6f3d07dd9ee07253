"""Hosts of a fixed size (cluster/local/cpuhosts.py): quota arithmetic, cgroup names, placement, the messages a
user gets, and the wrapper that starts a process inside its group. No cgroup is touched except in a tmp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.local import cpuhosts
from cluster.local.cpuhosts import CpuHost, CpuHostError
from cluster.local.processes import Proc


@pytest.mark.parametrize(("cpus", "quota"), [(0.3, 30_000), (0.4, 40_000), (1, 100_000), (2.5, 250_000),
                                             (0.333, 33_300), (0.01, 1_000)])
def test_quota_is_the_share_of_the_period(cpus: float, quota: int) -> None:
    assert cpuhosts.quota_us(cpus) == quota


def test_quota_rounds_down_never_giving_more_than_asked() -> None:
    assert cpuhosts.quota_us(0.123456) == 12_345
    assert cpuhosts.quota_us(0.5, period_us=50_000) == 25_000


@pytest.mark.parametrize("cpus", [0, -1, float("nan"), float("inf")])
def test_quota_refuses_what_is_no_size_and_names_the_option(cpus: float) -> None:
    with pytest.raises(CpuHostError, match="--cpu-per-host must be a positive number"):
        cpuhosts.quota_us(cpus)


def test_quota_below_the_kernel_minimum_says_the_smallest_size() -> None:
    with pytest.raises(CpuHostError, match=r"--cpu-per-host 0.005 .* at least 1000 us: ask for at least 0.01 core"):
        cpuhosts.quota_us(0.005)


def test_a_host_larger_than_the_machine_is_refused() -> None:
    with pytest.raises(CpuHostError, match="more than the 2 CPUs of this machine"):
        cpuhosts.check_size(3, machine_cpus=2)
    cpuhosts.check_size(2, machine_cpus=2)


def test_group_names_carry_the_tag_and_member() -> None:
    assert cpuhosts.group_name("ab12cd", "h-worker1-0") == "citus-ab12cd-h-worker1-0"


@pytest.mark.parametrize("member", ["../etc", "a/b", "with space", "x\n"])
def test_group_names_refuse_what_could_leave_the_controller(member: str) -> None:
    with pytest.raises(CpuHostError, match="cannot name a cgroup"):
        cpuhosts.group_name("t", member)


def test_plan_places_one_host_per_member_with_the_same_quota() -> None:
    hosts = cpuhosts.plan_hosts(["h-coordinator-0", "h-worker1-0", "h-worker2-0"], 0.3, "t1")
    assert [h.member for h in hosts] == ["h-coordinator-0", "h-worker1-0", "h-worker2-0"]
    assert {h.quota_us for h in hosts} == {30_000} and {h.cpus for h in hosts} == {0.3}
    assert len({h.group for h in hosts}) == 3
    assert cpuhosts.host_of(hosts, "h-worker2-0") == hosts[2]
    assert cpuhosts.host_of(hosts, "etcd-0") is None  # etcd and HAProxy are not database hosts


def test_unusable_controller_message_names_the_option_and_the_fixes(tmp_path: Path) -> None:
    with pytest.raises(CpuHostError) as caught:
        cpuhosts.require_controller(tmp_path)
    message = str(caught.value)
    assert "--cpu-per-host needs the cgroup v1 cpu controller mounted and writable" in message
    assert "no cpu.cfs_quota_us" in message and "mount -t cgroup -o cpu" in message
    assert "run without --cpu-per-host" in message


def fake_controller(root: Path) -> Path:
    (root / "cpu.cfs_quota_us").write_text("-1\n")
    return root


def test_create_writes_quota_and_period_and_remove_deletes(tmp_path: Path) -> None:
    root = fake_controller(tmp_path)
    hosts = (CpuHost("m0", "citus-t-m0", 30_000), CpuHost("m1", "citus-t-m1", 30_000))
    cpuhosts.create(hosts, root)
    cpuhosts.create(hosts, root)  # idempotent
    assert cpuhosts.read_quota("citus-t-m1", root) == (30_000, 100_000)
    for h in hosts:  # a real cgroup's files vanish with rmdir; a tmp dir's do not
        for f in (root / h.group).iterdir():
            f.unlink()
    assert cpuhosts.remove(hosts, root, timeout=0) == []
    assert not (root / "citus-t-m0").exists()


def test_remove_reports_groups_that_stay(tmp_path: Path) -> None:
    root = fake_controller(tmp_path)
    host = CpuHost("m0", "citus-t-m0", 30_000)
    cpuhosts.create((host,), root)  # its files make rmdir fail, as processes in a cgroup would
    assert cpuhosts.remove((host,), root, timeout=0) == ["citus-t-m0"]


def test_enter_argv_joins_the_group_then_execs_in_place(tmp_path: Path) -> None:
    argv = cpuhosts.enter_argv("g", ["patroni", "/cfg"], tmp_path)
    assert argv[:3] == ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"']
    assert argv[3] == str(tmp_path / "g" / "cgroup.procs") and argv[4:] == ["patroni", "/cfg"]


def test_enter_argv_really_writes_its_own_pid(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "g").mkdir()
    done = subprocess.run(cpuhosts.enter_argv("g", ["sh", "-c", "echo $$"], tmp_path), capture_output=True,
                          text=True, check=True)
    assert (tmp_path / "g" / "cgroup.procs").read_text().strip() == done.stdout.strip()  # exec kept the PID


def test_a_recorded_process_keeps_its_group() -> None:
    assert Proc("m0", ["x"], "/l", cgroup="citus-t-m0").cgroup == "citus-t-m0"
    assert Proc(**{"name": "m0", "argv": ["x"], "log": "/l", "pid": 1, "netns": ""}).cgroup == ""  # older state


def test_harness_config_sets_the_cpus_the_derivation_follows() -> None:
    from cluster.local.harness import harness_config
    from cluster.tuning import member_cpus

    assert member_cpus(harness_config({}, 0.4)) == 0.4
    with pytest.raises(CpuHostError, match="resources.database.cpus: 2.0 but --cpu-per-host is 0.4"):
        harness_config({"resources": {"database": {"cpus": 2.0, "memoryMb": 768}}}, 0.4)
