"""PgBouncer (issue 15 item 1): config, plan, renderer, HAProxy, image and the Pulumi graph, without processes."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from cluster.config import ConfigError, load_config
from cluster.plan import CONTAINER_PORTS, LocalLayout, PortBook, build_plan, ports_needed
from cluster.provision.roles import POOLER_FUNCTION_SQL, with_password
from cluster.provision.scram import pooled_verifier, verifies
from cluster.provision.target import target_from_plan
from cluster.render import render_dockerfile, render_files, render_haproxy, render_pgbouncer, render_pgbouncer_auth
from cluster.render.dockerfile import entrypoint
from cluster.render.haproxy import LEADER_READS_BACKEND, PRIMARY_BACKEND, REPLICAS_BACKEND
from cluster.roles import POOLER_USER
from tests.unit.pulumi_mocks import Deployment, deploy
from tests.unit.test_component import SECRET_SIG


def plan_for(raw: dict | None = None, layout=None):  # type: ignore[no-untyped-def]
    return build_plan(load_config(raw or {}).config, layout)


def ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_pooling_is_on_by_default_with_sane_pool_sizes() -> None:
    pooling = load_config({}).config.pooling
    assert pooling.enabled
    assert (pooling.pool_size, pooling.reserve_pool_size, pooling.max_client_connections) == (20, 5, 2000)


@pytest.mark.parametrize(("raw", "key", "fix"), [
    ({"pooling": {"poolSize": 0}}, "pooling.poolSize", "greater than or equal to 1"),
    ({"pooling": {"maxClientConnections": 5}}, "pooling.maxClientConnections", "greater than or equal to 10"),
    ({"pooling": {"poolSize": "many"}}, "pooling.poolSize", "valid integer"),
    ({"pooling": {"mode": "session"}}, "pooling.mode", "Known keys here: enabled, maxClientConnections"),
    # 2 x (45 + 5) + 1 + 20 kept for Patroni/replication = 121 > 100: names the key and both ways out.
    ({"pooling": {"poolSize": 45}, "postgresql": {"parameters": {"max_connections": 100}}}, "pooling.poolSize",
     "Lower pooling.poolSize to at most 34, or raise postgresql.parameters.max_connections"),
])
def test_bad_pooling_config_names_the_key_and_the_fix(raw: dict, key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(raw)
    assert key in str(error.value) and fix in str(error.value)


def test_pools_that_fit_max_connections_are_accepted_and_off_skips_the_check() -> None:
    load_config({"pooling": {"poolSize": 34}, "postgresql": {"parameters": {"max_connections": 100}}})
    load_config({"pooling": {"enabled": False, "poolSize": 500}, "postgresql": {"parameters": {"max_connections": 50}}})


def test_every_coordinator_member_and_only_those_get_a_pooler_on_their_own_host() -> None:
    plan = plan_for({"coordinator": {"members": 3}})
    assert plan.pooled
    for m in plan.coordinators:
        assert m.pooler is not None
        assert m.pooler.endpoint.host == m.host == m.postgres.host
        assert m.pooler.endpoint.port == CONTAINER_PORTS["pooler"]
        assert m.pooler.config_path == "/etc/pgbouncer/pgbouncer.ini"
    assert all(m.pooler is None for g in plan.groups[1:] for m in g)
    off = plan_for({"pooling": {"enabled": False}})
    assert not off.pooled and all(m.pooler is None for m in off.members)


def test_local_layout_gives_each_pooler_a_port_of_its_own() -> None:
    config = load_config({}).config
    ports = range(41000, 41000 + ports_needed(config))
    plan = build_plan(config, LocalLayout("/tmp/h", PortBook(free=ports), "/usr/lib/postgresql/15/bin"))
    poolers = [m.pooler for m in plan.coordinators]
    assert all(p is not None and p.endpoint.host == "127.0.0.1" for p in poolers)
    assert len({p.endpoint.port for p in poolers if p}) == 2
    assert poolers[0] is not None and poolers[0].config_dir == f"/tmp/h/{plan.coordinators[0].name}/pgbouncer"


def test_rendered_ini_pools_transactions_with_auth_query_and_tls_both_ways() -> None:
    plan = plan_for({"pooling": {"poolSize": 12, "reservePoolSize": 3, "maxClientConnections": 1500}})
    member = plan.coordinators[1]
    conf = ini(render_pgbouncer(plan, member))
    assert conf["databases"]["*"] == f"host={member.name} port=5432"
    assert conf["users"]["postgres"] == "pool_mode=session"  # operations keep session semantics
    b = conf["pgbouncer"]
    assert (b["pool_mode"], b["default_pool_size"], b["reserve_pool_size"], b["max_client_conn"]) == (
        "transaction", "12", "3", "1500")
    assert (b["listen_addr"], b["listen_port"], b["unix_socket_dir"]) == ("0.0.0.0", "6432", "")
    assert b["auth_type"] == "scram-sha-256" and b["auth_user"] == POOLER_USER
    assert b["auth_query"] == "SELECT usename, passwd FROM pgbouncer.get_auth($1)"
    assert b["auth_file"] == "/etc/pgbouncer/auth_user.txt"
    tls = "/etc/citus-cluster/tls"
    assert (b["client_tls_sslmode"], b["client_tls_cert_file"], b["client_tls_key_file"]) == (
        "require", f"{tls}/server.crt", f"{tls}/server.key")
    assert (b["server_tls_sslmode"], b["server_tls_ca_file"]) == ("verify-full", f"{tls}/ca.crt")


def test_the_ini_and_every_credential_free_file_hold_no_password() -> None:
    plan = plan_for()
    files = render_files(plan)
    assert sorted(f for f in files if f.startswith("pgbouncer/")) == [
        f"pgbouncer/{m.name}/pgbouncer.ini" for m in plan.coordinators]
    text = "\n".join(files.values())
    assert "password" not in render_pgbouncer(plan, plan.coordinators[0]).lower()
    assert "pooler-secret" not in text
    # The auth file: the auth_user's own credential and the superuser's verifier, quoted as PgBouncer reads them.
    verifier = pooled_verifier("su-password", "postgres", 'pooler-"secret')
    assert render_pgbouncer_auth('pooler-"secret', verifier) == (
        f'"pgbouncer_auth" "pooler-""secret"\n"postgres" "{verifier}"\n')
    with pytest.raises(ValueError, match="SCRAM verifier"):
        render_pgbouncer_auth("pooler", "su-password")


def test_pooled_verifier_is_stable_accepts_the_password_and_depends_on_the_secret() -> None:
    one = pooled_verifier("su-password", "postgres", "pooler-a")
    assert one == pooled_verifier("su-password", "postgres", "pooler-a")  # provisioning and the file agree
    assert verifies(one, "su-password") and not verifies(one, "other")
    assert one != pooled_verifier("su-password", "postgres", "pooler-b")
    assert one != pooled_verifier("su-password", "app", "pooler-a")


def test_a_worker_member_has_no_pgbouncer_file() -> None:
    plan = plan_for()
    with pytest.raises(ValueError, match="runs no PgBouncer"):
        render_pgbouncer(plan, plan.groups[1][0])


def test_auth_function_is_a_locked_down_security_definer() -> None:
    assert "SECURITY DEFINER" in POOLER_FUNCTION_SQL
    assert "SET search_path = pg_catalog, pg_temp" in POOLER_FUNCTION_SQL
    assert "rolcanlogin" in POOLER_FUNCTION_SQL and "'pgbouncer_auth', 'replicator'" in POOLER_FUNCTION_SQL


def test_haproxy_read_write_checks_patroni_but_sends_to_the_leaders_pgbouncer() -> None:
    plan = plan_for()
    text = render_haproxy(plan)
    backend = text.split(f"\nbackend {PRIMARY_BACKEND}")[1].split("\nbackend ")[0]
    for m in plan.coordinators:
        assert f"server {m.name} {m.name}:6432 check port 8008 verifyhost {m.name}" in backend
    assert "uri /primary" in backend
    replicas = text.split(f"\nbackend {REPLICAS_BACKEND}")[1].split("\nbackend ")[0]
    assert ":6432" not in replicas
    off = render_haproxy(plan_for({"pooling": {"enabled": False}}))
    assert ":6432" not in off and f"server {plan.coordinators[0].name} {plan.coordinators[0].name}:5432" in off
    assert LEADER_READS_BACKEND not in off


def test_read_only_fallback_to_the_leader_bypasses_pgbouncer() -> None:
    """A read-only session asks for the secondaries with startup options, which PgBouncer refuses: with no
    coordinator standby the read-only listener must reach the leader's PostgreSQL itself."""
    plan = plan_for()
    text = render_haproxy(plan)
    frontend = text.split("\nfrontend read_only")[1].split("\n\n")[0]
    assert f"default_backend {LEADER_READS_BACKEND}" in frontend
    fallback = text.split(f"\nbackend {LEADER_READS_BACKEND}")[1].split("\n\n")[0]
    assert "uri /primary" in fallback and ":6432" not in fallback
    for m in plan.coordinators:
        assert f"server {m.name} {m.name}:5432 check port 8008 verifyhost {m.name}" in fallback


def test_the_image_installs_pgbouncer_and_starts_it_only_where_its_file_is() -> None:
    dockerfile = render_dockerfile(plan_for())
    assert "pgbackrest pgbouncer;" in dockerfile
    assert "rm -f /etc/pgbouncer/*" in dockerfile  # the package's own config would start it on workers
    shell, flag, script = entrypoint()
    assert (shell, flag) == ("/bin/sh", "-c")
    assert script.startswith("if [ -f /etc/pgbouncer/pgbouncer.ini ]; then (while true; do /usr/sbin/pgbouncer")
    assert script.endswith("exec /opt/patroni/bin/patroni /etc/patroni")
    # The paths the plan gives Docker members: the rotation's SIGHUP reads the PID the loop writes for each start.
    pooler = plan_for().coordinators[0].pooler
    assert f"/usr/sbin/pgbouncer {pooler.config_path} & echo $! > {pooler.pid_file}; wait $!;" in script
    assert '"/bin/sh", "-c"' in dockerfile


def test_target_carries_the_pooler_password_only_when_pooling() -> None:
    assert target_from_plan(plan_for(), "su", "app", pooler_password="po").pooler_password == "po"
    off = plan_for({"pooling": {"enabled": False}})
    assert target_from_plan(off, "su", "app", pooler_password="po").pooler_password == ""
    assert "po" not in repr(target_from_plan(plan_for(), "su", "app", pooler_password="po"))


def test_the_rotations_pool_priming_login_is_the_app_role_through_read_write() -> None:
    """delivery.prime_pool logs in as the application role on the read-write URL: user and password replaced,
    quoted, everything else (host, port, database, TLS) kept."""
    target = target_from_plan(plan_for(), "su", "app-pw", pooler_password="po")
    dsn = with_password(target.rw_dsn, "n@w:p/w", user="my app")
    assert dsn.startswith("postgresql://my%20app:n%40w%3Ap%2Fw@")
    assert dsn.split("@", 1)[1] == target.rw_dsn.split("@", 1)[1]
    assert with_password(target.rw_dsn, "x") == target.rw_dsn.replace(":su@", ":x@")


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return deploy({}, tmp_path_factory.mktemp("build"))


def test_coordinator_containers_get_the_ini_and_a_secret_auth_file(dev: Deployment) -> None:
    plan = plan_for()
    for m in plan.coordinators:
        uploads = {u["file"]: u for u in dev.named(m.name).inputs["uploads"]["value"]}
        assert uploads["/etc/pgbouncer/pgbouncer.ini"]["content"] == render_pgbouncer(plan, m)
        auth = uploads["/etc/pgbouncer/auth_user.txt"]
        assert (auth["owner"], auth["group"], auth["permissions"]) == ("999", "999", "0600")
        assert auth["content"] == render_pgbouncer_auth("generated-poolerPassword", pooled_verifier(
            "generated-superuserPassword", "postgres", "generated-poolerPassword"))
        assert SECRET_SIG in dev.named(m.name).inputs["uploads"]  # the uploads travel as a secret
    worker = {u["file"] for u in dev.named(plan.groups[1][0].name).inputs["uploads"]["value"]}
    assert not [f for f in worker if "pgbouncer" in f]
    assert "poolerPassword" in {r.name for r in dev.of_type("RandomPassword")}


def test_pooling_off_uploads_no_pgbouncer_file(tmp_path: Path) -> None:
    d = deploy({"pooling": {"enabled": False}}, tmp_path)
    for container in d.of_type("Container"):
        files = [u["file"] for u in container.inputs.get("uploads", {}).get("value", [])]
        assert not [f for f in files if "pgbouncer" in f], container.name


def test_pooling_report_names_both_paths_and_the_servers_words() -> None:
    from benchmarks.pooling import report

    error = 'connection failed: connection to server at "127.0.0.1", port 1 failed: FATAL:  sorry, too many clients'
    run = {"clients": 100, "connected": 89, "served": 89, "seconds": 6.0, "errors": {error: 11}}
    ok = {"clients": 1000, "connected": 1000, "served": 1000, "seconds": 15.2, "errors": {}}
    latency = {"clients": 16, "errors": {"direct": 0, "pgbouncer": 0},
               "paths": {"direct": {"q": {"n": 9, "p50_ms": 40.0, "p95_ms": 68.0}},
                         "pgbouncer": {"q": {"n": 9, "p50_ms": 43.0, "p95_ms": 69.0}}},
               "added_ms": {"q": {"p50_ms": 3.0, "p95_ms": 1.0}}}
    text = report({"meta": {"max_connections": 100, "rows": 10},
                   "max_clients": {"without_pgbouncer": {"runs": [run], "most_served": 89, "all_served_up_to": 0},
                                   "with_pgbouncer": {"runs": [ok], "most_served": 1000, "all_served_up_to": 1000}},
                   "latency_16": latency})
    assert "11 x FATAL:  sorry, too many clients" in text
    assert "without PgBouncer **89**" in text and "with PgBouncer **1000**" in text
    assert "| q | 40.0 | 68.0 | 43.0 | 69.0 | 3.0 | 1.0 |" in text
