"""The rendered Prometheus files pass `promtool check`, and every alert fires (and stays quiet) as intended in
`promtool test rules`, on series shaped like Patroni's /metrics plus the labels the scrape config adds."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster import tls
from cluster.config import load_config
from cluster.plan import build_plan
from cluster.render.prometheus import (
    CA_FILE,
    CLIENT_CERT,
    CLIENT_KEY,
    RULES_FILE,
    SCRAPE_FILE,
    render_prometheus,
    scrape_config,
)

PLAN = build_plan(load_config({"coordinator": {"members": 1}}).config)  # group 0 has no standby to miss
GROUP_1 = {"w0": "citus-worker1-0", "w1": "citus-worker1-1"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CITUS_CLUSTER_REQUIRE_HARNESS") == "1":
            pytest.fail("promtool missing: install Debian's prometheus package (.ci/run does)")
        pytest.skip("promtool missing (Debian package prometheus)")
    return found


def run(*args: str, cwd: Path) -> str:
    done = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def series(metric: str, member: str, values: str, group: str = "1", has_standby: str = "true") -> dict[str, str]:
    labels = (f'job="patroni",instance="{member}:8008",citus_group="{group}",member="{member}",'
              f'has_standby="{has_standby}"')
    return {"series": f"{metric}{{{labels}}}", "values": values}


def target_labels(member: str, group: str = "1") -> dict[str, str]:
    return {"job": "patroni", "instance": f"{member}:8008", "citus_group": group, "member": member,
            "has_standby": "true"}


def alerts_at(at: str, name: str, expected: list[dict[str, Any]]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": expected}


def annotated(summary: str, **labels: str) -> dict[str, Any]:
    return {"exp_labels": labels, "exp_annotations": {"summary": summary}}


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    """The rendered files, with the TLS files the scrape config names beside them (as a user puts them)."""
    for name, text in render_prometheus(PLAN).items():
        (tmp_path / name).write_text(text)
    authority = tls.new_authority("prometheus-test")
    for name, text in ((CA_FILE, authority.cert), (CLIENT_CERT, authority.cert), (CLIENT_KEY, authority.key)):
        (tmp_path / name).write_text(text)
    return tmp_path


def test_scrape_config_and_rules_are_valid(rendered: Path) -> None:
    assert "SUCCESS: 6 rules found" in run("check", "rules", RULES_FILE, cwd=rendered)
    run("check", "config", SCRAPE_FILE, cwd=rendered)


def test_scrape_config_labels_every_member_with_its_group() -> None:
    targets = scrape_config(PLAN)["scrape_configs"][0]["static_configs"]
    assert [t["labels"]["member"] for t in targets] == [m.name for m in PLAN.members]
    assert [t["targets"] for t in targets] == [[m.api.address] for m in PLAN.members]
    assert {t["labels"]["has_standby"] for t in targets if t["labels"]["citus_group"] == "0"} == {"false"}
    assert {t["labels"]["has_standby"] for t in targets if t["labels"]["citus_group"] == "1"} == {"true"}


def test_every_alert_fires_in_its_drill_and_not_otherwise(rendered: Path) -> None:
    w0, w1 = GROUP_1["w0"], GROUP_1["w1"]
    tests = [
        {   # kill the group-1 leader at 1 min: it stops answering, w1 is promoted at 1m30s, w0 back at 3 min
            "interval": "15s",
            "input_series": [
                {"series": f'up{{job="patroni",instance="{w0}:8008",citus_group="1",member="{w0}",'
                           'has_standby="true"}', "values": "1x3 0x7 1x30"},
                series("patroni_primary", w0, "1x3 _x7 0x30"),
                series("patroni_primary", w1, "0x5 _x0 0x0 1x34"),
                series("patroni_postgres_streaming", w1, "1x5 0x35"),
                series("patroni_postgres_streaming", w0, "_x10 1x30"),
            ],
            "alert_rule_test": [
                alerts_at("30s", "CitusMemberDown", []),
                alerts_at("2m", "CitusMemberDown", [annotated(
                    f"{w0} (group 1) does not answer: its Patroni /metrics is unreachable (member stopped, crashed "
                    "or cut off)", severity="critical", **target_labels(w0))]),
                alerts_at("5m", "CitusMemberDown", []),
                alerts_at("30s", "CitusLeaderChanged", []),
                alerts_at("2m", "CitusLeaderChanged", [annotated(
                    "group 1 changed leader in the last 5m (failover or switchover); check why "
                    "(`python -m cluster status`)", severity="warning", citus_group="1")]),
                alerts_at("9m", "CitusLeaderChanged", []),  # recovered: no change in the last 5 min
                alerts_at("2m", "CitusGroupWithoutStandby", [annotated(
                    "group 1 has no streaming standby: one more failure loses it, and new writes have no "
                    "synchronous copy", severity="critical", citus_group="1")]),
                alerts_at("4m", "CitusGroupWithoutStandby", []),
            ],
        },
        {   # the group loses its leader and nobody is promoted for a minute; a standby lags 2 MiB; a pause
            "interval": "15s",
            "input_series": [
                series("patroni_primary", w0, "1x3 0x12"),
                series("patroni_primary", w1, "0x15"),
                series("patroni_xlog_location", w0, "100000000x15"),
                series("patroni_xlog_replayed_location", w0, "0x15"),
                series("patroni_xlog_replayed_location", w1, "100000000x3 97902848x12"),
                series("patroni_is_paused", w1, "1x60"),
            ],
            "alert_rule_test": [
                alerts_at("30s", "CitusGroupWithoutLeader", []),
                alerts_at("2m", "CitusGroupWithoutLeader", [annotated(
                    "group 1 has no leader: its writes fail until Patroni promotes a standby",
                    severity="critical", citus_group="1")]),
                alerts_at("1m", "CitusStandbyLag", []),
                alerts_at("3m", "CitusStandbyLag", [annotated(
                    f"{w1} replays 2MiB behind its leader, more than failover allows (maximum_lag_on_failover): "
                    "Patroni would not promote it", severity="warning", **target_labels(w1))]),
                alerts_at("5m", "CitusMaintenanceMode", []),
                alerts_at("11m", "CitusMaintenanceMode", [annotated(
                    f"Patroni is paused on {w1}: no automatic failover", severity="warning", **target_labels(w1))]),
            ],
        },
    ]
    document = {"rule_files": [RULES_FILE], "evaluation_interval": "15s", "tests": tests}
    (rendered / "tests.yml").write_text(yaml.safe_dump(document))
    assert "SUCCESS" in run("test", "rules", "tests.yml", cwd=rendered)
