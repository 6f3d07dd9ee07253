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
from cluster.render.pgbouncer import RESERVE_POOL_TIMEOUT
from cluster.render.prometheus import (
    CA_FILE,
    CLIENT_CERT,
    CLIENT_KEY,
    POOL_WAIT_SECONDS,
    RULES_FILE,
    SCRAPE_FILE,
    render_prometheus,
    scrape_config,
)

# Group 0 has no standby to miss; monitoring on, so the exporters' alerts are rendered too.
PLAN = build_plan(load_config({"coordinator": {"members": 1}, "monitoring": {"enabled": True}}).config)
GROUP_1 = {"w0": "citus-worker1-0", "w1": "citus-worker1-1"}
COORDINATOR = "citus-coordinator-0"


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
              f'postgres="{member}:5432",has_standby="{has_standby}"')
    return {"series": f"{metric}{{{labels}}}", "values": values}


def exported(metric: str, values: str, member: str = COORDINATOR, group: str = "0", **labels: str) -> dict[str, str]:
    """A series from member's prometheus-postgres-exporter (the Citus queries' labels in `labels`)."""
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    text = f'job="postgres",instance="{member}:9187",citus_group="{group}",member="{member}"{extra}'
    return {"series": f"{metric}{{{text}}}", "values": values}


def node(metric: str, group: int, values: str, member: str | None = None) -> dict[str, str]:
    """citus_node_* of one pg_dist_node primary, as the coordinator leader's exporter reports it."""
    member = member or f"citus-worker{group}-0"
    return exported(metric, values, group_id=str(group), node=f"{member}:5432", role="primary")


def target_labels(member: str, group: str = "1") -> dict[str, str]:
    return {"job": "patroni", "instance": f"{member}:8008", "citus_group": group, "member": member,
            "postgres": f"{member}:5432", "has_standby": "true"}


def exporter_labels(member: str, group: str) -> dict[str, str]:
    return {"job": "postgres", "instance": f"{member}:9187", "citus_group": group, "member": member}


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
    assert "SUCCESS: 14 rules found" in run("check", "rules", RULES_FILE, cwd=rendered)
    run("check", "config", SCRAPE_FILE, cwd=rendered)


def test_scrape_config_labels_every_member_with_its_group() -> None:
    jobs = {job["job_name"]: job for job in scrape_config(PLAN)["scrape_configs"]}
    assert list(jobs) == ["patroni", "postgres", "haproxy", "etcd", "pgbouncer"]
    targets = jobs["patroni"]["static_configs"]
    assert [t["labels"]["member"] for t in targets] == [m.name for m in PLAN.members]
    assert [t["targets"] for t in targets] == [[m.api.address] for m in PLAN.members]
    assert [t["labels"]["postgres"] for t in targets] == [f"{m.name}:5432" for m in PLAN.members]
    exporters = jobs["postgres"]["static_configs"]
    assert [t["targets"] for t in exporters] == [[f"{m.name}:9187"] for m in PLAN.members]
    assert jobs["postgres"]["scheme"] == "https" and jobs["postgres"]["tls_config"] == {"ca_file": CA_FILE}
    assert jobs["haproxy"]["static_configs"][0]["targets"] == ["citus-haproxy:7000"]
    assert jobs["haproxy"]["basic_auth"] == {"username": "admin", "password_file": "haproxy-stats.password"}
    poolers = jobs["pgbouncer"]["static_configs"]  # every coordinator member's PgBouncer, none on the workers
    assert [t["targets"] for t in poolers] == [[f"{m.name}:9127"] for m in PLAN.coordinators]
    assert [t["labels"] for t in poolers] == [{"citus_group": "0", "member": m.name} for m in PLAN.coordinators]
    assert jobs["pgbouncer"]["scheme"] == "https" and jobs["pgbouncer"]["tls_config"] == {"ca_file": CA_FILE}
    assert {t["labels"]["has_standby"] for t in targets if t["labels"]["citus_group"] == "0"} == {"false"}
    assert {t["labels"]["has_standby"] for t in targets if t["labels"]["citus_group"] == "1"} == {"true"}


def test_every_alert_fires_in_its_drill_and_not_otherwise(rendered: Path) -> None:
    w0, w1 = GROUP_1["w0"], GROUP_1["w1"]
    tests = [
        {   # kill the group-1 leader at 1 min: it stops answering, w1 is promoted at 1m30s, w0 back at 3 min
            "interval": "15s",
            "input_series": [
                {"series": f'up{{job="patroni",instance="{w0}:8008",citus_group="1",member="{w0}",'
                           f'postgres="{w0}:5432",has_standby="true"}}', "values": "1x3 0x7 1x30"},
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
    tests += exporter_drills() + pgbouncer_drills()
    document = {"rule_files": [RULES_FILE], "evaluation_interval": "15s", "tests": tests}
    (rendered / "tests.yml").write_text(yaml.safe_dump(document))
    assert "SUCCESS" in run("test", "rules", "tests.yml", cwd=rendered)


def exporter_drills() -> list[dict[str, Any]]:
    """The alerts on the exporters' Citus queries, each fired by its fault and silent without it."""
    w0, w1 = GROUP_1["w0"], GROUP_1["w1"]
    out_of_step = (
        "pg_dist_node does not name {m} ({m}:5432), Patroni's leader of group 1, as the group's primary: Citus sends "
        "the group's queries elsewhere (Patroni's coordinator updates it each heartbeat; if it stays, run "
        "`python -m cluster provision`)"
    )
    return [
        {   # group 1 fails over to w1 at 1 min; pg_dist_node still names w0 until 3 min. Group 2 stays in step.
            "interval": "15s",
            "input_series": [
                series("patroni_primary", w0, "1x3 0x36"),
                series("patroni_primary", w1, "0x3 1x36"),
                series("patroni_primary", "citus-worker2-0", "1x39", group="2"),
                node("citus_node_primary", 1, "1x11 0x28", member=w0),
                node("citus_node_primary", 1, "0x11 1x28", member=w1),
                node("citus_node_primary", 2, "1x39"),
            ],
            "alert_rule_test": [
                alerts_at("45s", "CitusDistNodeOutOfStep", []),
                alerts_at("1m15s", "CitusDistNodeOutOfStep", []),  # not for 30 s yet: Patroni's coordinator may
                alerts_at("2m", "CitusDistNodeOutOfStep", [annotated(  # still be catching up
                    out_of_step.format(m=w1), severity="critical", citus_group="1", member=w1,
                    postgres=f"{w1}:5432")]),
                alerts_at("4m", "CitusDistNodeOutOfStep", []),
            ],
        },
        {   # no exporter answers at all: the check stays quiet (nothing to compare), it does not cry wolf
            "interval": "15s",
            "input_series": [series("patroni_primary", w0, "1x20")],
            "alert_rule_test": [alerts_at("3m", "CitusDistNodeOutOfStep", [])],
        },
        {   # at 10 min a shard moves around: counts 4/4/4 -> 6/4/2 and bytes 100/100/100 -> 300/100/100 MB; a
            # small cluster's uneven bytes (10/1/1 MB) stay under the floor
            "interval": "1m",
            "input_series": [
                node("citus_node_shards", 1, "4x9 6x40"),
                node("citus_node_shards", 2, "4x49"),
                node("citus_node_shards", 3, "4x9 2x40"),
                node("citus_node_shards", 0, "0x49", member=COORDINATOR),  # the coordinator's group holds none
                node("citus_node_bytes", 1, "100000000x9 300000000x40"),
                node("citus_node_bytes", 2, "100000000x49"),
                node("citus_node_bytes", 3, "100000000x49"),
            ],
            "alert_rule_test": [
                alerts_at("9m", "CitusShardCountSkew", []),
                alerts_at("20m", "CitusShardCountSkew", []),
                alerts_at("26m", "CitusShardCountSkew", [annotated(
                    "worker groups hold unequal shard counts (spread 100%): run `python -m cluster provision "
                    "--rebalance`", severity="warning")]),
                alerts_at("30m", "CitusShardBytesSkew", []),
                alerts_at("41m", "CitusShardBytesSkew", [annotated(
                    "worker groups hold unequal bytes (spread 120%): hot cells or tenants; rebalance by disk size "
                    "(rebalance_strategy 'by_disk_size')", severity="warning")]),
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                node("citus_node_bytes", 1, "10000000x49"),
                node("citus_node_bytes", 2, "1000000x49"),
                node("citus_node_bytes", 3, "1000000x49"),
            ],
            "alert_rule_test": [alerts_at("45m", "CitusShardBytesSkew", [])],
        },
        {   # w0's disk: 100 GiB with 50 GiB free, then 1 GiB lost a minute from 10 min; w1 steady at 50 % free
            "interval": "1m",
            "input_series": [
                exported("citus_disk_total_bytes", "107374182400x120", member=w0, group="1"),
                exported("citus_disk_available_bytes", "53687091200x9 53687091200-1073741824x110", member=w0,
                         group="1"),
                exported("citus_disk_total_bytes", "107374182400x120", member=w1, group="1"),
                exported("citus_disk_available_bytes", "53687091200x120", member=w1, group="1"),
            ],
            "alert_rule_test": [
                alerts_at("20m", "CitusDiskFullSoon", []),  # -1 GiB/min only for 10 min: not yet 15 min of it
                alerts_at("40m", "CitusDiskFullSoon", [annotated(
                    f"{w0}'s data directory fills within 4 hours at the rate of the last 1h", severity="warning",
                    **exporter_labels(w0, "1"))]),
                alerts_at("40m", "CitusDiskFilling", []),
                alerts_at("55m", "CitusDiskFilling", []),  # under 10 % free from 51 min: not for 5 min yet
                alerts_at("57m", "CitusDiskFilling", [annotated(
                    f"{w0}'s data directory has 3% of its disk free: PostgreSQL stops when it is full",
                    severity="critical", **exporter_labels(w0, "1"))]),
            ],
        },
        {   # w0's archive starts failing at 2 min; from 5 min its WAL piles up to 5 GiB against max_wal_size 1 GiB
            "interval": "1m",
            "input_series": [
                exported("citus_archiver_failing", "0x1 1x30", member=w0, group="1"),
                exported("citus_archiver_failing", "0x31", member=w1, group="1"),
                exported("citus_wal_bytes", "1073741824x4 5368709120x26", member=w0, group="1"),
                exported("citus_wal_max_bytes", "1073741824x30", member=w0, group="1"),
                exported("citus_wal_bytes", "1073741824x30", member=w1, group="1"),
                exported("citus_wal_max_bytes", "1073741824x30", member=w1, group="1"),
            ],
            "alert_rule_test": [
                alerts_at("5m", "CitusArchiveFailing", []),
                alerts_at("8m", "CitusArchiveFailing", [annotated(
                    f"{w0} cannot archive WAL (pgBackRest archive-push fails): point-in-time recovery stops at the "
                    "last archived segment and pg_wal grows until it succeeds", severity="critical",
                    **exporter_labels(w0, "1"))]),
                alerts_at("10m", "CitusWalFillingDisk", []),
                alerts_at("16m", "CitusWalFillingDisk", [annotated(
                    f"{w0} keeps 5GiB of WAL, more than 3 x max_wal_size: a failing archive or a stuck replication "
                    "slot is filling its disk", severity="critical", **exporter_labels(w0, "1"))]),
            ],
        },
    ]


def pooled(metric: str, values: str, member: str = COORDINATOR, **labels: str) -> dict[str, str]:
    """A series from member's prometheus-pgbouncer-exporter (per pool: database and user labels)."""
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    text = f'job="pgbouncer",instance="{member}:9127",citus_group="0",member="{member}"{extra}'
    return {"series": f"{metric}{{{text}}}", "values": values}


def pgbouncer_drills() -> list[dict[str, Any]]:
    """Clients of the app pool wait in PgBouncer from 2 min (the oldest 1 s, then 6 s and more) until 8 min; the
    superuser's pool sees a 3 s wait (PgBouncer opens the reserve pool then), which is not an exhausted pool."""
    waits = "0x7 1 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 0x20"
    return [{
        "interval": "15s",
        "input_series": [
            pooled("pgbouncer_pool_max_wait_seconds", waits, database="citus", user="app"),
            pooled("pgbouncer_pool_max_wait_seconds", "0x7 3x20 0x20", database="citus", user="postgres"),
        ],
        "alert_rule_test": [
            alerts_at("2m", "PgBouncerClientsWaiting", []),
            alerts_at("2m45s", "PgBouncerClientsWaiting", []),  # waiting, but not for a minute yet
            alerts_at("3m45s", "PgBouncerClientsWaiting", [annotated(
                f"the oldest waiting client of app@citus in {COORDINATOR}'s PgBouncer has waited 12 s for a server "
                "connection: the pool is exhausted (raise pooling.poolSize within max_connections, or find the long "
                "transactions holding it)", severity="warning", citus_group="0", member=COORDINATOR,
                database="citus", user="app")]),
            alerts_at("9m", "PgBouncerClientsWaiting", []),  # the queue drained
        ],
    }]


def test_pool_wait_alert_waits_out_the_reserve_pool() -> None:
    assert POOL_WAIT_SECONDS > RESERVE_POOL_TIMEOUT


def test_pgbouncer_job_and_alert_only_where_pgbouncer_exporters_run() -> None:
    """No PgBouncer (pooling off) or no exporters (Docker without monitoring): no job, no rule waiting on it."""
    for config in ({"monitoring": {"enabled": True}, "pooling": {"enabled": False}}, {}):
        plan = build_plan(load_config(config).config)
        assert "pgbouncer" not in [job["job_name"] for job in scrape_config(plan)["scrape_configs"]], config
        names = [r["alert"] for r in yaml.safe_load(render_prometheus(plan)[RULES_FILE])["groups"][0]["rules"]]
        assert "PgBouncerClientsWaiting" not in names, config


def test_exporter_alerts_are_rendered_only_where_exporters_run() -> None:
    """The Docker stack runs exporters only with monitoring.enabled; without, no rule waits on their metrics."""
    plain = build_plan(load_config({}).config)
    names = [r["alert"] for r in yaml.safe_load(render_prometheus(plain)[RULES_FILE])["groups"][0]["rules"]]
    assert "CitusDistNodeOutOfStep" not in names and "CitusMemberDown" in names
    assert "postgres" not in [job["job_name"] for job in scrape_config(plain)["scrape_configs"]]
    no_backups = build_plan(load_config({"monitoring": {"enabled": True}, "backups": {"enabled": False}}).config)
    names = [r["alert"] for r in yaml.safe_load(render_prometheus(no_backups)[RULES_FILE])["groups"][0]["rules"]]
    assert "CitusArchiveFailing" not in names and "CitusWalFillingDisk" in names
