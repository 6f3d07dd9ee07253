"""Patroni's dynamic configuration: the patch provisioning sends to bring a running cluster to the plan."""

from __future__ import annotations

from cluster.config import load_config
from cluster.plan import build_plan
from cluster.provision.dcs import config_patch, dropped_parameters
from cluster.render.patroni import dcs_config


def _wanted(parameters: dict | None = None) -> dict:
    plan = build_plan(load_config({"postgresql": {"parameters": parameters or {}}}).config)
    return dcs_config(plan, 1)


def test_a_cluster_already_in_step_gets_no_patch() -> None:
    wanted = _wanted({"max_connections": 150})
    assert config_patch(wanted, wanted) == {} and dropped_parameters(wanted, wanted) == {}


def test_only_changed_keys_are_patched_and_values_compare_as_postgresql_reads_them() -> None:
    current = _wanted({"max_connections": 150})
    current["postgresql"]["parameters"]["wal_log_hints"] = "ON"  # Patroni keeps what it was given
    wanted = _wanted({"max_connections": 300})
    assert config_patch(current, wanted) == {"postgresql": {"parameters": {"max_connections": 300}}}


def test_a_dcs_setting_removed_from_the_config_is_reset_and_hand_made_keys_are_kept() -> None:
    current = _wanted({"max_locks_per_transaction": 256})
    current["postgresql"]["parameters"]["work_mem"] = "8MB"  # not DCS-only: someone's own, left alone
    current["master_start_timeout"] = 10
    wanted = _wanted()
    assert dropped_parameters(current, wanted) == {"max_locks_per_transaction": None}
    assert config_patch(current, wanted) == {}


def test_dcs_config_carries_the_dcs_only_settings_per_group() -> None:
    plan = build_plan(load_config({"postgresql": {"parameters": {"Max_Connections": 150, "work_mem": "8MB"}},
                                   "workers": {"members": 1}}).config)
    coordinator, worker = dcs_config(plan, 0), dcs_config(plan, 1)
    assert coordinator["postgresql"]["parameters"]["max_connections"] == 150
    assert "work_mem" not in coordinator["postgresql"]["parameters"]
    assert coordinator["synchronous_mode"] is True and worker["synchronous_mode"] is False
