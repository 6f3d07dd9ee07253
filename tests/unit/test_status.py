"""`status`'s judgement on hand-made facts: a healthy cluster has no finding, and each fault is named."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cluster.__main__ import main
from cluster.provision.citus import NodeRow
from cluster.render.haproxy import LEADERS_BACKEND, PRIMARY_BACKEND, REPLICAS_BACKEND
from cluster.render.patroni import MAXIMUM_LAG_ON_FAILOVER
from cluster.status import cli, diagnose
from cluster.status.diagnose import Facts, MemberFacts, ServerFacts, ShardFacts
from cluster.status.gather import member_facts, parse_stats_csv

# Two groups of two: c0 leads the coordinator, w0 leads worker group 1.
ADDRESS = {"c0": "10.0.0.1:5432", "c1": "10.0.0.2:5432", "w0": "10.0.0.3:5432", "w1": "10.0.0.4:5432"}


def member(name: str, group: int, leads: bool, **changes: object) -> MemberFacts:
    m = MemberFacts(name=name, group=group, address=ADDRESS[name], reachable=True,
                    state="running" if leads else "streaming", role="leader" if leads else "quorum_standby",
                    timeline=1, lag=None if leads else 0)
    return replace(m, **changes)  # type: ignore[arg-type]


def node(nodeid: int, name: str, group: int, role: str, active: bool = True) -> NodeRow:
    host, port = ADDRESS[name].split(":")
    return NodeRow(nodeid, group, host, int(port), role, active, group != 0)


def servers(rw: str, any_leaders: tuple[str, ...], ro: tuple[str, ...]) -> tuple[ServerFacts, ...]:
    """HAProxy's view: `rw` up in the primary backend, `ro` up in the replicas one, `any_leaders` in group_leaders."""
    return (
        *(ServerFacts(PRIMARY_BACKEND, n, "UP" if n == rw else "DOWN") for n in ("c0", "c1")),
        *(ServerFacts(REPLICAS_BACKEND, n, "UP" if n in ro else "DOWN") for n in ("c0", "c1")),
        *(ServerFacts(LEADERS_BACKEND, n, "UP" if n in any_leaders else "DOWN") for n in ADDRESS),
    )


HEALTHY = Facts(
    members=(member("c0", 0, True), member("c1", 0, False), member("w0", 1, True), member("w1", 1, False)),
    haproxy=servers("c0", ("c0", "w0"), ("c1",)),
    nodes=(node(1, "c0", 0, "primary"), node(2, "w0", 1, "primary"), node(3, "c1", 0, "secondary"),
           node(4, "w1", 1, "secondary")),
    shards=(ShardFacts(1, 16, 4_000_000), ShardFacts(2, 16, 4_100_000)),
)


def texts(facts: Facts, severity: str = "error") -> list[str]:
    return [f"{f.subject}: {f.text}" for f in diagnose(facts).findings if f.severity == severity]


def with_member(facts: Facts, name: str, **changes: object) -> Facts:
    return replace(facts, members=tuple(replace(m, **changes) if m.name == name else m  # type: ignore[arg-type]
                                        for m in facts.members))


def test_a_healthy_cluster_has_no_finding() -> None:
    result = diagnose(HEALTHY)
    assert result.findings == () and result.healthy
    assert result.skew is not None and result.skew.shards == 0 and result.skew.bytes == pytest.approx(0.1 / 4.05)


def test_a_stopped_standby_is_named_and_its_group_has_no_standby() -> None:
    facts = replace(with_member(HEALTHY, "c1", reachable=False, state=None, error="Connection refused"),
                    haproxy=servers("c0", ("c0", "w0"), ()))
    errors = texts(facts)
    assert errors[0].startswith("c1: down: its Patroni REST API does not answer (Connection refused)")
    assert errors[1].startswith("group 0: no standby running (c1 down)")
    assert len(errors) == 2 and not diagnose(facts).healthy


def test_a_killed_worker_leader_leaves_its_group_leaderless_and_haproxy_behind() -> None:
    facts = with_member(HEALTHY, "w0", reachable=False, error="Connection refused")  # HAProxy not caught up yet
    errors = texts(facts)
    assert errors[0].startswith("w0: down")
    assert errors[1].startswith("group 1: no leader")
    assert errors[2].startswith(f"HAProxy {LEADERS_BACKEND}: sends traffic to w0 (down by Patroni)")
    unreadable = replace(facts, shards=(ShardFacts(1, 16, 0), ShardFacts(2, 16, 4_100_000)))
    assert texts(unreadable, "warning") == []  # a dead primary's shards read 0 bytes: no size skew claimed


def test_pg_dist_node_behind_a_new_worker_leader_is_an_error() -> None:
    promoted = with_member(with_member(HEALTHY, "w0", reachable=False, role="leader"), "w1", role="leader",
                           state="running", lag=None)
    facts = replace(promoted, haproxy=servers("c0", ("c0", "w1"), ("c1",)))
    errors = texts(facts)
    assert errors[0].startswith("w0: down")
    assert "pg_dist_node group 1: primary is 10.0.0.3:5432 but Patroni's leader is w1 (10.0.0.4:5432)" in errors[-1]
    registered = replace(facts, nodes=(node(1, "c0", 0, "primary"), node(2, "w1", 1, "primary"),
                                       node(3, "c1", 0, "secondary"), node(4, "w0", 1, "secondary")))
    assert [e.split(":")[0] for e in errors] == ["w0", "group 1", "pg_dist_node group 1"]
    assert texts(registered) == errors[:2]  # the dead member and its group's lost standby, once Citus follows


def test_haproxy_routing_writes_to_a_replica_is_an_error() -> None:
    errors = texts(replace(HEALTHY, haproxy=servers("c1", ("c0", "w0"), ("c1",))))
    assert errors == [
        f"HAProxy {PRIMARY_BACKEND}: does not send traffic to c0 (leader by Patroni): its checks have not caught up, "
        "or it is misconfigured",
        f"HAProxy {PRIMARY_BACKEND}: sends traffic to c1 (quorum_standby by Patroni): its checks have not caught up, "
        "or it is misconfigured",
    ]


def test_no_rw_server_and_unreadable_parts_are_errors() -> None:
    down = tuple(replace(s, status="DOWN") if s.backend == PRIMARY_BACKEND else s for s in HEALTHY.haproxy or ())
    assert f"HAProxy {PRIMARY_BACKEND}: no server up" in texts(replace(HEALTHY, haproxy=down))[-1]
    blind = replace(HEALTHY, haproxy=None, haproxy_error="Connection refused", nodes=None, citus_error="timeout")
    assert [e.split(":")[0] for e in texts(blind)] == ["HAProxy", "Citus"]


def test_split_brain_postgres_not_running_and_unregistered_group() -> None:
    two = with_member(HEALTHY, "w1", role="leader", state="running")
    assert "group 1: 2 members claim to lead (w0, w1)" in texts(two)
    crashed = with_member(HEALTHY, "c1", state="crashed")
    assert texts(crashed)[0] == "c1: PostgreSQL is 'crashed', not running (Patroni is up; see its log)"
    missing = replace(HEALTHY, nodes=tuple(n for n in HEALTHY.nodes or () if n.group != 1))
    assert texts(missing) == ["pg_dist_node group 1: not registered: Citus sends this group nothing "
                              "(`python -m cluster provision`)"]
    inactive = replace(HEALTHY, nodes=(node(1, "c0", 0, "primary"), node(2, "w0", 1, "primary", active=False),
                                       *(HEALTHY.nodes or ())[2:]))
    assert texts(inactive) == ["pg_dist_node group 1: primary 10.0.0.3:5432 is inactive: Citus skips it"]


def test_warnings_keep_the_cluster_healthy() -> None:
    facts = with_member(with_member(HEALTHY, "w1", lag=MAXIMUM_LAG_ON_FAILOVER + 1, timeline=2), "c0", paused=True)
    facts = replace(facts, shards=(ShardFacts(1, 20, 9_000_000), ShardFacts(2, 12, 3_000_000)),
                    nodes=(HEALTHY.nodes or ())[:3])
    result = diagnose(facts)
    assert result.healthy
    warnings = texts(facts, "warning")
    assert warnings[0].startswith("c0: Patroni is in maintenance mode")
    assert warnings[1].startswith("w1: 1.0 MiB behind w0, more than failover allows")
    assert warnings[2].startswith("w1: on timeline 2, its leader w0 on 1")
    assert warnings[3].startswith("pg_dist_node group 1: w1 is not registered as a secondary")
    assert warnings[4].startswith("pg_dist_node group 1: no secondary registered: reads through the read-only")
    assert warnings[5].startswith("shards: unbalanced by count (group 1: 20, group 2: 12; spread 50%)")
    assert warnings[6].startswith("shards: unbalanced by size")


def test_read_only_endpoint_reads_fail_where_a_worker_group_has_no_running_secondary() -> None:
    """Citus reads a worker group's shards on its secondary row only (citus.use_secondary_nodes = always)."""
    assert texts(HEALTHY, "warning") == []
    down = with_member(HEALTHY, "w1", reachable=False, state=None, error="refused")
    assert texts(down, "warning") == [
        "pg_dist_node group 1: w1 is registered as a secondary but is not a running standby: reads through the "
        "read-only endpoint that reach it fail until Patroni updates the row or the member is back"]
    # Patroni's swap after a failover: the new leader's row is primary, the dead old leader's row secondary.
    promoted = with_member(with_member(HEALTHY, "w0", role="replica", state="stopped"), "w1", role="leader")
    promoted = replace(promoted, nodes=(node(1, "c0", 0, "primary"), node(2, "w1", 1, "primary"),
                                        node(3, "c1", 0, "secondary"), node(4, "w0", 1, "secondary")))
    assert any("w0 is registered as a secondary but is not a running standby" in t
               for t in texts(promoted, "warning"))
    gone = replace(HEALTHY, nodes=(HEALTHY.nodes or ())[:3])
    assert "pg_dist_node group 1: no secondary registered: reads through the read-only endpoint that touch " \
           "group 1 fail ('node group 1 does not have a secondary node') until a standby runs again" \
           in texts(gone, "warning")
    coordinator_only = replace(HEALTHY, nodes=(HEALTHY.nodes or ())[:2] + (HEALTHY.nodes or ())[3:])  # no c1 row
    assert not any("group 0: no secondary" in t for t in texts(coordinator_only, "warning"))


def test_member_facts_from_patroni_answers() -> None:
    from cluster.provision.target import MemberTarget

    target = MemberTarget("w1", 1, "http://h:8008", "postgresql://x", "10.0.0.4", 5432)
    seen = {"name": "w1", "role": "quorum_standby", "state": "streaming", "timeline": 3, "lag": 4096}
    facts = member_facts(target, {"state": "running", "role": "replica", "timeline": 3, "pause": True}, seen)
    assert (facts.role, facts.lag, facts.timeline, facts.paused, facts.address) == (
        "quorum_standby", 4096, 3, True, "10.0.0.4:5432")
    gone = member_facts(target, "Connection refused", {"role": "leader"})
    assert not gone.reachable and gone.error == "Connection refused" and not gone.running
    unknown_lag = member_facts(target, {"state": "running", "role": "replica"}, {**seen, "lag": "unknown"})
    assert unknown_lag.lag is None


def test_haproxy_csv_keeps_server_lines_only() -> None:
    text = ("# pxname,svname,qcur,status,check_status\n"
            "read_write,FRONTEND,,OPEN,\n"
            f"{PRIMARY_BACKEND},c0,0,UP,L7OK\n"
            f"{PRIMARY_BACKEND},c1,0,DOWN 1/2,L7STS\n"
            f"{PRIMARY_BACKEND},BACKEND,0,UP,\n")
    assert parse_stats_csv(text) == (ServerFacts(PRIMARY_BACKEND, "c0", "UP"),
                                     ServerFacts(PRIMARY_BACKEND, "c1", "DOWN 1/2"))
    assert not parse_stats_csv(text)[1].up


def test_screen_shows_every_member_haproxy_citus_shards_and_findings() -> None:
    facts = with_member(HEALTHY, "w1", reachable=False, state=None, error="refused")
    screen = cli.format_screen(facts, diagnose(facts), now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    lines = screen.splitlines()
    assert lines[0] == "NOT HEALTHY (2 errors); 1 warnings    2026-01-02 03:04:05 UTC"  # w1: secondary, not running
    assert lines[2].split() == ["GROUP", "MEMBER", "ROLE", "STATE", "TL", "LAG", "HAPROXY", "PG_DIST_NODE"]
    assert lines[3].split() == ["0", "c0", "leader", "running", "1", "rw:UP", "ro:DOWN", "any:UP", "primary"]
    assert lines[6].split() == ["1", "w1", "?", "DOWN", "any:DOWN", "secondary"]
    assert "SHARDS  group 1: 16 (3.8 MiB)   group 2: 16 (3.9 MiB)   spread: count 0%, bytes unknown" in screen
    healthy = cli.format_screen(HEALTHY, diagnose(HEALTHY))
    assert healthy.startswith("HEALTHY; 0 warnings") and "spread: count 0%, bytes 2%" in healthy
    assert "ERRORS\n  w1: down" in screen and "group 1: no standby running (w1 down)" in screen


def test_status_cli_prints_json_and_exits_1_on_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"target": {
        "rw_dsn": "postgresql://postgres:pw@h:1/citus", "members": [], "database": "citus", "app_user": "app",
        "app_password": "x", "stats_url": "http://h:7000/"}, "passwords": {"stats": "st"}}))
    seen = {}
    broken = with_member(HEALTHY, "c1", reachable=False)
    monkeypatch.setattr(cli, "gather", lambda target: seen.setdefault("target", target) and broken)
    assert main(["status", "--harness", str(tmp_path), "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["healthy"] is False and document["findings"][0]["subject"] == "c1"
    assert seen["target"].stats_password == "st" and seen["target"].stats_url == "http://h:7000/"
    monkeypatch.setattr(cli, "gather", lambda target: HEALTHY)
    assert main(["status", "--harness", str(tmp_path)]) == 0
    assert "Nothing wrong." in capsys.readouterr().out
    assert main(["status", "--harness", str(tmp_path), "--watch", "0"]) == 2


def test_watch_redraws_until_ctrl_c_and_exits_with_the_last_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"target": {
        "rw_dsn": "postgresql://postgres:pw@h:1/citus", "members": [], "database": "citus", "app_user": "app",
        "app_password": "x"}}))
    looks = iter([with_member(HEALTHY, "c1", reachable=False), HEALTHY])
    monkeypatch.setattr(cli, "gather", lambda target: next(looks))
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli.time, "sleep", sleep)
    assert main(["status", "--harness", str(tmp_path), "--watch", "1.5"]) == 0  # the last look was healthy
    out = capsys.readouterr().out
    assert out.count("GROUP  MEMBER") == 2 and "NOT HEALTHY" in out and sleeps == [1.5, 1.5]
