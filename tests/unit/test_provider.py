"""The dynamic providers stay picklable and decide correctly what a change means (no cluster needed)."""

from __future__ import annotations

import dill

from cluster.config import load_config
from cluster.plan import build_plan
from cluster.provision.provider import ProvisioningProvider, WorkerGroupProvider, _delivery_due, _stats_rotated
from cluster.provision.target import ClusterTarget, target_from_plan
from cluster.render.dockerfile import entrypoint
from cluster.render.secret_files import MemberSecrets, all_member_secrets, member_secrets
from cluster.secrets import Passwords


def props(groups: int, migrations: dict[str, str] | None = None, cell_degrees: float = 0.04,
          passwords: tuple[str, str, str, str] = ("su pw", "app-pw", "repl-pw", "rest-pw"),
          extra: dict | None = None) -> dict:
    plan = build_plan(load_config({"workers": {"groups": groups},
                                   "citus": {"distribution": {"cellDegrees": cell_degrees}}, **(extra or {})}).config)
    target = target_from_plan(plan, *passwords)
    return {
        "target": target.to_dict(),
        "migrations": [{"name": n, "checksum": c, "sql": "--"} for n, c in (migrations or {}).items()],
    }


def test_providers_pickle_with_dill_and_come_back_working() -> None:
    for provider in (ProvisioningProvider(), WorkerGroupProvider()):
        clone = dill.loads(dill.dumps(provider, recurse=True))
        assert type(clone).__name__ == type(provider).__name__
    clone = dill.loads(dill.dumps(ProvisioningProvider(), recurse=True))
    assert clone.diff("id", props(3), props(4)).changes


def test_diff_sees_added_and_removed_groups() -> None:
    provider = ProvisioningProvider()
    assert provider.diff("id", props(3), props(4)).changes
    assert provider.diff("id", props(3), props(2)).changes
    assert not provider.diff("id", props(3), props(3)).changes
    assert provider.diff("id", props(3), props(4)).replaces == []


def test_diff_sees_schema_changes_by_checksum() -> None:
    provider = ProvisioningProvider()
    old = props(3, {"010_a.sql": "aaa"})
    assert not provider.diff("id", old, props(3, {"010_a.sql": "aaa"})).changes
    assert provider.diff("id", old, props(3, {"010_a.sql": "bbb"})).changes
    assert provider.diff("id", old, props(3, {"010_a.sql": "aaa", "020_b.sql": "c"})).changes


def test_diff_sees_a_changed_grid_so_provisioning_can_refuse_it() -> None:
    provider = ProvisioningProvider()
    assert not provider.diff("id", props(3), props(3, cell_degrees=0.04)).changes
    assert provider.diff("id", props(3), props(3, cell_degrees=0.05)).changes


def test_diff_sees_every_input_that_changes_what_provisioning_does() -> None:
    provider = ProvisioningProvider()
    base = props(3)
    changes = {
        "app user": props(3, extra={"citus": {"appUser": "fleet"}}),
        "app password": props(3, passwords=("su pw", "new-app", "repl-pw", "rest-pw")),
        "superuser password": props(3, passwords=("new su", "app-pw", "repl-pw", "rest-pw")),
        "replication password": props(3, passwords=("su pw", "app-pw", "new repl", "rest-pw")),
        "REST password": props(3, passwords=("su pw", "app-pw", "repl-pw", "new rest")),
        "a DCS-only setting": props(3, extra={"postgresql": {"parameters": {"max_connections": 150}}}),
    }
    for what, news in changes.items():
        assert provider.diff("id", base, news).changes, what


def test_a_new_stats_password_is_a_change_provisioning_waits_for() -> None:
    """The courier container is replaced with it; the update waits until HAProxy's stats page takes it. A stack
    from before (no stats password among the props) gets one without a wait."""
    provider = ProvisioningProvider()
    old, new = {**props(3), "stats": "st-1"}, {**props(3), "stats": "st-2"}
    assert provider.diff("id", old, new).changes and not provider.diff("id", old, {**props(3), "stats": "st-1"}).changes
    assert _stats_rotated(old, new)
    assert not _stats_rotated(props(3), new) and not _stats_rotated(old, old)


def test_target_round_trips_and_hides_secrets_from_repr() -> None:
    target = target_from_plan(build_plan(load_config({}).config), "s3cret/pw", "app-pw")
    assert ClusterTarget.from_dict(target.to_dict()) == target
    assert "s3cret" not in repr(target) and "app-pw" not in repr(target)
    tls = f"?sslmode=verify-full&sslrootcert={target.ca_file}"
    assert target.rw_dsn == f"postgresql://postgres:s3cret%2Fpw@127.0.0.1:5432/citus{tls}"
    worker = target.members_of(2)[0]
    assert (worker.host, worker.port) == ("citus-worker2-0", 5432)  # what Citus registers, in-cluster
    assert worker.dsn.endswith(f"@127.0.0.1:15436/citus{tls}")  # what provisioning dials, published, verified
    assert target.worker_groups == [1, 2, 3]


def with_delivery(base: dict, stats: str = "stats", containers: dict[str, str] | None = None,
                  groups: int = 3) -> dict:
    """`base` plus what the stack adds for delivery: every member's secret files and its container's ID."""
    plan = build_plan(load_config({"workers": {"groups": groups}}).config)
    passwords = Passwords(**{name: f"{name}-pw" for name in Passwords.names()} | {"stats": stats})
    secrets = [s.to_dict() for s in all_member_secrets(plan, passwords)]
    ids = {m.name: f"id-{m.name}" for m in plan.members} | (containers or {})
    return {**base, "secrets": secrets, "containers": ids}


def test_delivery_is_due_for_changed_files_and_replaced_containers_only() -> None:
    provider = ProvisioningProvider()
    base = with_delivery(props(3))
    assert not provider.diff("id", base, with_delivery(props(3))).changes
    rotated = {**base, "secrets": [{**s, "patroni_text": s["patroni_text"] + "# rotated\n"} for s in base["secrets"]]}
    assert provider.diff("id", base, rotated).changes
    assert _delivery_due(base, rotated)
    replaced = with_delivery(props(3), containers={"citus-worker1-1": "id-new"})
    assert provider.diff("id", base, replaced).changes and _delivery_due(base, replaced)
    # The stats password is not in a member's files: nothing to deliver (HAProxy is the stack's to replace).
    assert not _delivery_due(base, with_delivery(props(3), stats="other"))
    # A group that arrives brings members created with their files: nothing to deliver for them.
    assert not _delivery_due(base, with_delivery(props(4), groups=4))
    # A stack from before delivery existed recorded no containers: its members have the files they were created
    # with, which were the configured ones (nothing was ignored then).
    assert _delivery_due(props(3), base) is False and _delivery_due({**base, "containers": {}}, base) is False


def test_member_secrets_round_trip_and_name_the_files_the_entrypoint_writes() -> None:
    plan = build_plan(load_config({}).config)
    passwords = Passwords(**{name: f"{name}-pw" for name in Passwords.names()})
    for s in all_member_secrets(plan, passwords):
        assert MemberSecrets.from_dict(s.to_dict()) == s
    coordinator = member_secrets(plan, plan.coordinators[0], passwords)
    assert coordinator.pooler_file and coordinator.pooler_pid_file and "pooler-pw" in coordinator.pooler_text
    worker = member_secrets(plan, plan.groups[1][0], passwords)
    assert (worker.pooler_file, worker.pooler_text, worker.pooler_pid_file) == ("", "", "")
    script = entrypoint()[2]
    assert f"echo $$ > {coordinator.patroni_pid_file}; exec " in script
    assert f"echo $! > {coordinator.pooler_pid_file};" in script
