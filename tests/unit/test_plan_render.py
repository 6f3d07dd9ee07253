"""Plan and renderers: pure functions, checked on their output."""

from __future__ import annotations

import pytest
import yaml

from cluster.config import load_config
from cluster.config.models import DCS_PARAMETERS, MANAGED_PARAMETERS
from cluster.config.versions import citus_image_tag
from cluster.plan import LocalLayout, PortBook, build_plan, ports_needed
from cluster.render import (
    etcd_command,
    image_spec,
    render_dockerfile,
    render_files,
    render_haproxy,
    render_patroni,
    render_patroni_secrets,
)
from cluster.render.patroni import OVERRUN_ALLOWANCE
from cluster.secrets import Passwords

PASSWORDS = Passwords("su-pw", "repl-pw", "api-pw", "stats-pw", "app-pw", "mon-pw", "pooler-pw")


def plan_for(raw: dict | None = None, layout=None):  # type: ignore[no-untyped-def]
    return build_plan(load_config(raw or {}).config, layout)


def test_groups_members_and_names() -> None:
    plan = plan_for({"workers": {"groups": 4, "members": 3}})
    assert [len(g) for g in plan.groups] == [2, 3, 3, 3, 3]
    assert [m.group for m in plan.coordinators] == [0, 0]
    assert plan.groups[4][2].name == "citus-worker4-2"
    assert [m.ordinal for m in plan.members] == list(range(14))
    assert len({m.name for m in plan.members} | {e.name for e in plan.etcd} | {plan.balancer.name}) == 14 + 3 + 1


def test_published_ports_follow_the_bases() -> None:
    plan = plan_for({"ports": {"postgresBase": 20000, "patroniBase": 21000}})
    assert [m.published_postgres for m in plan.members] == list(range(20000, 20008))
    assert [m.published_api for m in plan.members] == list(range(21000, 21008))
    assert plan.balancer.published == {"read-write": 5432, "read-only": 5433, "stats": 7000}


def test_local_layout_gives_every_listener_its_own_loopback_port() -> None:
    config = load_config({}).config
    ports = tuple(range(40000, 40000 + ports_needed(config)))
    plan = build_plan(config, LocalLayout("/tmp/h", PortBook(free=ports), "/usr/lib/postgresql/15/bin"))
    used = [p for m in plan.members for p in (m.postgres.port, m.api.port, m.exporter.port)]
    used += [p for e in plan.etcd for p in (e.client.port, e.peer.port)]
    used += [plan.balancer.read_write.port, plan.balancer.read_only.port, plan.balancer.stats.port]
    used += [p.port for m in plan.coordinators if m.pooler is not None  # PgBouncer and its exporter
             for p in (m.pooler.endpoint, m.pooler.exporter)]
    assert sorted(used) == list(ports)
    assert {m.postgres.listen for m in plan.members} == {"127.0.0.1"}
    assert plan.members[0].published_postgres == plan.members[0].postgres.port
    assert plan.allowed_cidr == "127.0.0.1/32" and plan.dns_resolver is None


def test_synchronous_defaults_on_where_a_standby_exists() -> None:
    mixed = plan_for({"coordinator": {"members": 2}, "workers": {"members": 1}})
    assert [mixed.synchronous(g) for g in range(4)] == [True, False, False, False]
    off = plan_for({"replication": {"synchronous": False}})
    assert not any(off.synchronous(g) for g in range(4))


def test_patroni_config_is_citus_mode_with_network_limited_scram_access() -> None:
    plan = plan_for({"network": {"subnet": "10.77.0.0/24"}})
    member = plan.groups[2][1]
    doc = yaml.safe_load(render_patroni(plan, member))
    assert doc["citus"] == {"group": 2, "database": "citus"}
    assert doc["scope"] == "citus" and doc["name"] == "citus-worker2-1"
    assert doc["etcd3"]["hosts"] == ["citus-etcd-0:2379", "citus-etcd-1:2379", "citus-etcd-2:2379"]
    hba = doc["postgresql"]["pg_hba"]
    assert all(line.endswith(("scram-sha-256", "peer", "reject")) for line in hba)
    # Every TCP rule that admits anyone needs TLS; anything without TLS, from anywhere, is refused.
    assert [line for line in hba if line.startswith("hostssl")] == [
        "hostssl replication replicator 10.77.0.0/24 scram-sha-256",
        "hostssl all all 10.77.0.0/24 scram-sha-256",
    ]
    assert {line for line in hba if line.startswith("hostnossl")} == {
        f"hostnossl {db} all {net} reject" for db in ("all", "replication") for net in ("0.0.0.0/0", "::/0")
    }
    assert not [line for line in hba if line.startswith("host ")]
    assert doc["bootstrap"]["dcs"]["ttl"] >= 20
    dcs = doc["bootstrap"]["dcs"]
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]
    # A leader cut off from etcd demotes before the lease can expire even with Patroni's measured overrun
    # (client timeouts, the failsafe check), with a second to spare.
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] + OVERRUN_ALLOWANCE <= dcs["ttl"] - 1
    # A demoting primary stuck behind a partitioned synchronous standby is stopped within one lease.
    assert 0 < dcs["primary_stop_timeout"] <= dcs["ttl"]


def test_rendered_patroni_files_hold_no_password_and_secrets_file_holds_them() -> None:
    plan = plan_for()
    for path, text in render_files(plan).items():
        assert "password:" not in text.lower(), path
    secrets = yaml.safe_load(render_patroni_secrets(PASSWORDS))
    assert secrets["postgresql"]["authentication"]["superuser"]["password"] == "su-pw"
    assert secrets["restapi"]["authentication"]["password"] == "api-pw"
    assert "su-pw" not in repr(PASSWORDS)


def test_user_parameters_pass_through_over_defaults() -> None:
    plan = plan_for({"postgresql": {"parameters": {" Work_Mem ": "64MB", "MAX_CONNECTIONS": 300}}})
    rendered = yaml.safe_load(render_patroni(plan, plan.members[0]))
    params = rendered["postgresql"]["parameters"]
    assert params["work_mem"] == "64MB" and params["citus.shard_count"] == 32
    # Patroni drops DCS-only settings from a member's file: they go where it reads them.
    dcs = rendered["bootstrap"]["dcs"]["postgresql"]["parameters"]
    assert dcs["max_connections"] == 300 and "max_connections" not in params
    assert dcs["max_wal_senders"] == 10 and dcs["wal_log_hints"] == "on"


def test_dcs_parameters_match_patronis_own_list() -> None:
    """Patroni's CMDLINE_OPTIONS (settings it takes from the DCS only) minus those the plan owns."""
    config_module = pytest.importorskip("patroni.postgresql.config")
    patroni_only = {name.lower() for name in config_module.ConfigHandler.CMDLINE_OPTIONS}
    assert patroni_only - set(MANAGED_PARAMETERS) == DCS_PARAMETERS


def test_haproxy_routes_by_patroni_health_checks() -> None:
    cfg = render_haproxy(plan_for({"coordinator": {"members": 3}}))
    assert "http-check send meth GET uri /primary" in cfg
    assert "http-check send meth GET uri /replica" in cfg
    assert "use_backend coordinator_replicas if { nbsrv(coordinator_replicas) gt 0 }" in cfg
    # 3 members x (primary, replicas, and the read-only fallback to the leader past PgBouncer)
    assert cfg.count("server citus-coordinator-") == 9
    assert "citus-worker" not in cfg
    # One credential for the stats page and /metrics, kept out of haproxy.cfg (render_haproxy_secrets).
    assert "http-request auth realm stats unless { http_auth(stats_users) }" in cfg
    assert "stats auth" not in cfg and "password" not in cfg
    assert "on-marked-down shutdown-sessions" in cfg


def test_image_tag_maps_postgres_major_to_the_official_tag() -> None:
    assert citus_image_tag("13.2.0", 17) == "13.2.0"
    assert citus_image_tag("13.2.0", 16) == "13.2.0-pg16"
    assert citus_image_tag("12.1.10", 16) == "12.1.10"
    assert "FROM citusdata/citus:13.2.0-pg15" in render_dockerfile(plan_for({"versions": {"postgres": 15}}))


def test_dockerfile_installs_postgis_for_the_major_and_pins_when_asked() -> None:
    unpinned = render_dockerfile(plan_for())
    assert "'postgresql-17-postgis-3' " in unpinned and "default_version" not in unpinned
    pinned = render_dockerfile(plan_for({"versions": {"postgis": "3.5"}}))
    assert "'postgresql-17-postgis-3=3.5.*'" in pinned and "default_version = '3.5." in pinned
    assert "'patroni[etcd3,psycopg3]==4.1.5'" in unpinned


def test_image_tag_changes_with_the_dockerfile_only() -> None:
    a, b = image_spec(plan_for()), image_spec(plan_for({"workers": {"groups": 5}}))
    assert a.name == b.name
    assert image_spec(plan_for({"versions": {"patroni": "4.1.6"}})).name != a.name


def test_etcd_command_lists_every_peer() -> None:
    plan = plan_for()
    argv = etcd_command(plan, plan.etcd[1])
    assert "--name=citus-etcd-1" in argv
    assert (
        "--initial-cluster=citus-etcd-0=https://citus-etcd-0:2380,citus-etcd-1=https://citus-etcd-1:2380,"
        "citus-etcd-2=https://citus-etcd-2:2380"
    ) in argv


def test_port_book_keeps_a_members_ports_when_the_plan_grows() -> None:
    book = PortBook(free=range(41000, 41100))
    small = build_plan(load_config({}).config, LocalLayout("/tmp/h", book, "/usr/lib/postgresql/15/bin"))
    grown_config = load_config({"workers": {"groups": 4}}).config
    grown = build_plan(grown_config, LocalLayout("/tmp/h", book, "/usr/lib/postgresql/15/bin"))
    before = {m.name: (m.postgres.port, m.api.port) for m in small.members}
    after = {m.name: (m.postgres.port, m.api.port) for m in grown.members}
    assert {name: after[name] for name in before} == before
    assert grown.balancer.read_write.port == small.balancer.read_write.port
    new_ports = {p for m in grown.groups[4] for p in (m.postgres.port, m.api.port)}
    small_ports = {p for m in small.members for p in (m.postgres.port, m.api.port)}
    assert len(new_ports) == 4 and not new_ports & small_ports


def test_any_node_listener_spreads_over_every_member_checked_for_leadership() -> None:
    off = render_haproxy(plan_for({}))
    assert "any_node" not in off
    plan = plan_for({"ports": {"anyNode": 5434}})
    text = render_haproxy(plan)
    backend = text.split("\nbackend group_leaders", 1)[1].split("\n\n", 1)[0]
    assert "uri /primary" in backend and "balance leastconn" in backend
    assert [line.split()[1] for line in backend.splitlines() if line.strip().startswith("server")] == [
        m.name for m in plan.members
    ]
    assert plan.balancer.published["any-node"] == 5434
    assert "@127.0.0.1:5434/citus?sslmode=verify-full&" in plan.dsn("any-node", "pw")
