"""`python -m cluster provision`: how it finds the cluster, and that it never prints a password."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster.__main__ import main
from cluster.config import load_config
from cluster.plan import build_plan
from cluster.provision import ProvisionResult, cli
from cluster.provision import target as targets
from cluster.provision.target import target_from_plan
from cluster.secrets import redact

SECRET = "p@ss/w:rd%"


def state_dir(tmp_path: Path) -> Path:
    target = target_from_plan(build_plan(load_config({}).config), SECRET, "app-" + SECRET)
    (tmp_path / "state.json").write_text(json.dumps({"target": target.to_dict()}))
    return tmp_path


def test_passwords_come_back_from_percent_encoded_dsns() -> None:
    plan = build_plan(load_config({}).config)
    assert targets.password_of(plan.dsn("read-write", SECRET)) == SECRET


def test_redact_hides_every_dsn_password() -> None:
    text = "failed: postgresql://postgres:s3cr%40t@127.0.0.1:5432/citus and postgres://app:x@h:1/d"
    assert redact(text) == "failed: postgresql://postgres:***@127.0.0.1:5432/citus and postgres://app:***@h:1/d"


def test_harness_state_gives_the_target(tmp_path: Path) -> None:
    target = targets.resolve_target(local=state_dir(tmp_path))
    assert target.app_password == "app-" + SECRET and len(target.members) == 8


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dsn", "postgresql://u:p@h:1/d"], "needs at least one --patroni"),
        (["--dsn", "postgresql://u:p@h:1/d", "--patroni", "http://h:8008"], "expected GROUP=URL"),
        (["--harness", "/nonexistent"], "state.json not found"),
        (["--dsn", "postgresql://u:p@h:1/d", "--patroni", "0=http://127.0.0.1:1"], "cannot read member identity"),
    ],
    ids=["no-patroni", "patroni-without-group", "not-a-harness", "patroni-unreachable"],
)
def test_usage_problems_exit_2_with_the_fix(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["provision", *argv]) == 2
    assert message in capsys.readouterr().err


def test_stack_mode_without_pulumi_says_so(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(targets.shutil, "which", lambda _name: None)
    assert main(["provision", "--stack", "dev", "--check"]) == 2
    assert "Pulumi CLI is not on PATH; use --dsn" in capsys.readouterr().err


def test_stack_mode_reads_passwords_from_the_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = build_plan(load_config({}).config)
    outputs = {"rw_dsn": plan.dsn("read-write", SECRET), "app_dsn": plan.dsn("read-write", "a%b", "app")}
    monkeypatch.setattr(targets, "pulumi_outputs", lambda _stack: outputs)
    target = targets.stack_target("dev")
    assert target.rw_dsn == outputs["rw_dsn"] and target.app_password == "a%b"
    assert target.stats_url == "https://127.0.0.1:7000/" and target.stats_password == ""  # a stack from before #15
    outputs[targets.STATS_PASSWORD_OUTPUT] = "st/ats"
    assert targets.stack_target("dev").stats_password == "st/ats"
    assert "st/ats" not in repr(targets.stack_target("dev"))
    assert {m.host for m in target.members} == {m.name for m in plan.members}  # dev stack: container names


def test_provision_output_is_readable_and_password_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    result = ProvisionResult(
        citus_version="13.2-1",
        nodes=[{"group": 0, "node": "c:5432", "role": "primary", "active": True}],
        applied=["0001_a.sql"],
        newly_applied=["0001_a.sql"],
        shard_counts={"w1:5432": 16},
    )
    seen = {}
    monkeypatch.setattr(cli, "provision", lambda target, files, **kw: seen.update(kw, target=target) or result)
    assert main(["provision", "--harness", str(state_dir(tmp_path)), "--rebalance"]) == 0
    out = capsys.readouterr()
    assert "Citus 13.2-1" in out.out and "this run: 0001_a.sql" in out.out and "w1:5432: 16 shards" in out.out
    assert seen["rebalance"] is True
    assert SECRET not in out.out + out.err and "p%40ss" not in out.out + out.err


def test_unhealthy_check_exits_1_listing_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from cluster.provision.health import HealthReport

    monkeypatch.setattr(cli, "check", lambda _t: HealthReport(problems=["w2 (group 2): Patroni REST unreachable"]))
    assert main(["provision", "--harness", str(state_dir(tmp_path)), "--check"]) == 1
    assert "NOT HEALTHY\n  - w2 (group 2): Patroni REST unreachable" in capsys.readouterr().out


def test_manual_mode_needs_the_app_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(targets, "member_identity", lambda url, ca_file: ("c0", "127.0.0.1", 5432))
    monkeypatch.delenv("CITUS_APP_PASSWORD", raising=False)
    argv = ["provision", "--dsn", "postgresql://postgres:pw@127.0.0.1:5432/citus", "--patroni", "0=http://h:8008"]
    assert main(argv) == 2
    assert "export CITUS_APP_PASSWORD" in capsys.readouterr().err
