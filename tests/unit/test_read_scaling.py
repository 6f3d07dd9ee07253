"""Read scaling (issue 15, item 2): what the read-only endpoint's sessions start with, and who may set it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from psycopg.conninfo import conninfo_to_dict

from cluster.config import load_config
from cluster.plan import build_plan
from cluster.provision.roles import grant_secondary_reads
from cluster.render.client import render_service_file


def test_only_the_read_only_dsn_starts_sessions_on_secondaries_and_read_only() -> None:
    plan = build_plan(load_config({"ports": {"anyNode": 5434}}).config)
    ro = plan.dsn("read-only", "pw", "app")
    options = parse_qs(urlsplit(ro).query)["options"]
    assert options == ["-c citus.use_secondary_nodes=always -c default_transaction_read_only=on"]
    assert conninfo_to_dict(ro)["options"] == options[0]  # libpq decodes it to the same text
    for listener in ("read-write", "any-node"):
        assert "options" not in plan.dsn(listener, "pw")  # type: ignore[arg-type]
    assert plan.session_options("read-write") == ""


def test_the_service_file_gives_the_read_only_service_the_same_options() -> None:
    plan = build_plan(load_config({}).config)
    blocks = {b.splitlines()[0]: b for b in render_service_file(plan, "/x/ca.crt", "/x/pgpass").split("\n\n")}
    assert "options=-c citus.use_secondary_nodes=always -c default_transaction_read_only=on" in blocks["[citus-app-ro]"]
    assert "options=" not in blocks["[citus-app]"] and "options=" not in blocks["[citus-admin]"]


def test_below_postgres_15_the_app_role_cannot_be_allowed_so_only_read_only_transactions() -> None:
    plan = build_plan(load_config({"versions": {"postgres": 14, "citus": "12.1.0"}}).config)
    assert plan.session_options("read-only") == "-c default_transaction_read_only=on"


class FakeConn:
    def __init__(self, version: int) -> None:
        self.info = type("Info", (), {"server_version": version})()
        self.statements: list[str] = []

    def execute(self, statement: object, *args: object) -> None:
        self.statements.append(statement.as_string(None) if hasattr(statement, "as_string") else str(statement))


def test_provisioning_grants_the_app_role_set_on_the_parameter_from_postgres_15() -> None:
    conn = FakeConn(150004)
    assert grant_secondary_reads(conn, "app") is True  # type: ignore[arg-type]
    assert conn.statements == ['GRANT SET ON PARAMETER "citus"."use_secondary_nodes" TO "app"']
    old = FakeConn(140011)
    assert grant_secondary_reads(old, "app") is False and old.statements == []  # type: ignore[arg-type]


def test_the_reads_benchmark_step_is_asked_for_and_needs_the_read_only_endpoint() -> None:
    import argparse

    from benchmarks.__main__ import DEFAULT_STEPS, STEPS, reads

    assert "reads" in STEPS and "reads" not in DEFAULT_STEPS  # it reloads the data: only when asked for
    args = argparse.Namespace(ro_dsn=None, concurrency_queries="radius_5km", read_clients=16, duration=1.0,
                              parallel=1)
    assert "skipped" in reads(args, None, "postgresql://x", None, {})  # type: ignore[arg-type]
