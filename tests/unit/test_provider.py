"""The dynamic providers stay picklable and decide correctly what a change means (no cluster needed)."""

from __future__ import annotations

import dill

from cluster.config import load_config
from cluster.plan import build_plan
from cluster.provision.provider import ProvisioningProvider, WorkerGroupProvider
from cluster.provision.target import ClusterTarget, target_from_plan


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
