"""Settings derived from the stack config (cluster/tuning.py): config in, settings out; the user's win."""

from __future__ import annotations

import pytest

from cluster.config import load_config
from cluster.config.sources import read_stack_file, stack_file
from cluster.plan import build_plan
from cluster.render.patroni import dcs_config, patroni_config, postgres_parameters
from cluster.tuning import REASONS, derived_parameters, effective_parameters


def config(raw: dict | None = None):  # type: ignore[no-untyped-def]
    return load_config(raw or {}).config


def with_cpus(cpus: float | None, shards: int = 12, groups: int = 3, memory: int = 768) -> dict:
    database: dict = {"memoryMb": memory} | ({} if cpus is None else {"cpus": cpus})
    return {"resources": {"database": database}, "citus": {"shardCount": shards}, "workers": {"groups": groups}}


def test_the_dev_stacks_shape_gets_what_issue_16_measured_best() -> None:
    """Unknown CPUs (one each), 12 shards over 3 groups, 768 MiB: pool 1, JIT off, no parallel gather."""
    derived = derived_parameters(config(with_cpus(None)))
    assert derived == {
        "citus.max_adaptive_executor_pool_size": 1,
        "citus.max_cached_conns_per_worker": 1,
        "jit": "off",
        "max_parallel_workers_per_gather": 0,
        "shared_buffers": "192MB",
        "effective_cache_size": "576MB",
        "work_mem": "9MB",
    }


def test_the_dev_stack_no_longer_needs_its_hand_set_parallel_setting() -> None:
    dev = config(read_stack_file(stack_file("dev"))[0])
    assert "max_parallel_workers_per_gather" not in dev.postgresql.parameters
    assert postgres_parameters(build_plan(dev))["max_parallel_workers_per_gather"] == 0


@pytest.mark.parametrize(("cpus", "pool"), [(None, 1), (0.5, 1), (1, 1), (2, 2), (3.5, 3), (4, 4), (64, 4)])
def test_the_executor_pool_follows_the_workers_cpus_up_to_their_shards(cpus: float | None, pool: int) -> None:
    derived = derived_parameters(config(with_cpus(cpus)))  # 4 shards per worker group
    assert derived["citus.max_adaptive_executor_pool_size"] == pool
    assert derived["citus.max_cached_conns_per_worker"] == pool


def test_a_different_cpu_count_gives_a_different_pool() -> None:
    two = derived_parameters(config(with_cpus(2)))["citus.max_adaptive_executor_pool_size"]
    eight = derived_parameters(config(with_cpus(8, shards=32, groups=2)))["citus.max_adaptive_executor_pool_size"]
    assert (two, eight) == (2, 8)


@pytest.mark.parametrize(("cpus", "shards", "groups", "parallel"), [
    (None, 12, 3, 0),  # one CPU, 4 shards per worker
    (4, 12, 3, 0),  # shards per worker == CPUs: each shard already has a core
    (3, 12, 3, 0),  # more shards than CPUs
    (8, 12, 3, 1),  # 2 CPUs per shard: one extra process each
    (16, 8, 4, 7),  # 8 CPUs per shard
    (64, 4, 4, 8),  # capped by PostgreSQL's max_parallel_workers
])
def test_parallel_workers_per_shard(cpus: float | None, shards: int, groups: int, parallel: int) -> None:
    derived = derived_parameters(config(with_cpus(cpus, shards, groups)))
    assert derived["max_parallel_workers_per_gather"] == parallel


def test_memory_follows_the_members_limit() -> None:
    derived = derived_parameters(config(with_cpus(None, memory=8192)))
    assert (derived["shared_buffers"], derived["effective_cache_size"], derived["work_mem"]) == (
        "2048MB", "6144MB", "96MB")
    small = derived_parameters(config(with_cpus(None, memory=128)))
    assert (small["shared_buffers"], small["work_mem"]) == ("32MB", "4MB")  # never below PostgreSQL's 4 MB


def test_the_users_parameters_always_win() -> None:
    raw = with_cpus(8) | {"postgresql": {"parameters": {
        "citus.max_adaptive_executor_pool_size": 16, "JIT": "on", "max_parallel_workers_per_gather": 2,
        "shared_buffers": "64MB"}}}
    plan = build_plan(config(raw))
    rendered = postgres_parameters(plan)
    assert rendered["citus.max_adaptive_executor_pool_size"] == 16
    assert rendered["jit"] == "on"
    assert rendered["max_parallel_workers_per_gather"] == 2
    assert rendered["shared_buffers"] == "64MB"
    assert rendered["citus.max_cached_conns_per_worker"] == 4  # not overridden: still derived
    assert effective_parameters(plan.config)["jit"] == "on"


def test_derived_settings_reach_every_members_file_not_the_dcs() -> None:
    plan = build_plan(config())
    for member in plan.members:
        parameters = patroni_config(plan, member)["postgresql"]["parameters"]
        assert parameters["jit"] == "off" and parameters["citus.max_adaptive_executor_pool_size"] == 1
    assert set(derived_parameters(plan.config)).isdisjoint(dcs_config(plan, 0)["postgresql"]["parameters"])


@pytest.mark.parametrize("name", sorted(REASONS))
def test_the_guards_accept_every_derived_setting_as_a_user_override(name: str) -> None:
    """Derived, not plan-owned: a user may set each one (here to the derived value itself)."""
    value = derived_parameters(config())[name]
    assert load_config({"postgresql": {"parameters": {name: value}}}).config.postgresql.parameters[name] == value


@pytest.mark.parametrize("memory", [128, 256, 512, 768, 4096, 65536])
def test_derived_memory_never_trips_the_memory_guard(memory: int) -> None:
    load_config(with_cpus(None, memory=memory))  # raises ConfigError on a problem


def test_the_memory_guard_checks_the_derived_values_under_a_user_override() -> None:
    """A user's work_mem beside the derived shared_buffers (192 MB of 768) is checked against the limit."""
    with pytest.raises(Exception, match="resources.database.memoryMb"):
        load_config({"postgresql": {"parameters": {"work_mem": "560MB"}}})
    load_config({"postgresql": {"parameters": {"work_mem": "400MB"}}})


def test_every_derived_setting_has_a_reason() -> None:
    assert set(REASONS) == set(derived_parameters(config()))
