"""`restore --stack NAME --in-place`: the Docker commands it sends, in order, against a recording stand-in for the
docker CLI (no Docker engine, no Pulumi engine here); the repository, health and SQL steps are the harness's
(rehearsed on real processes in tests/integration/test_backup.py) and are replaced by stand-ins."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from cluster.__main__ import _parser
from cluster.backup import BackupScope, RestorePoint, stack_restore
from cluster.backup.cli import confirmation, restore_mode
from cluster.backup.restore import RestoreChoice
from cluster.backup.runner import BackupError, DockerCli, DockerRunner
from cluster.config import load_config
from cluster.errors import ClusterError, UsageError
from cluster.plan import DOCKER_DATA_MOUNT, build_plan
from cluster.provision.target import target_from_plan

POINT = RestorePoint("before-the-delete", datetime(2026, 12, 3, 12, 0, tzinfo=UTC))


class RecordingDocker:
    """Records each docker command; `docker cp` also records the file's text; fails the command `fail_on`."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.copied: dict[str, str] = {}
        self.fail_on = fail_on

    def __call__(self, *args: str, timeout: float = 120.0) -> str:
        self.calls.append(args)
        if args[0] == self.fail_on:
            raise BackupError(f"`docker {args[0]}` failed (stand-in)")
        if args[0] == "cp":
            self.copied[args[2]] = Path(args[1]).read_text()
        return "sha256:node-image\n" if args[0] == "inspect" else ""

    def verbs(self) -> list[str]:
        return [c[0] for c in self.calls]


def scope_for(raw: dict | None = None) -> BackupScope:
    plan = build_plan(load_config(raw or {}).config)
    return BackupScope(plan, target_from_plan(plan, "su", "app"), DockerRunner())


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Point settling, health, pg_dist_node, row counts and the repository marks replaced; records the order."""
    events: list[str] = []

    def choose(scope: BackupScope, point: str | None, at: datetime | None) -> RestoreChoice:
        events.append("choose")
        return RestoreChoice(POINT, {g: f"2026120{g}-000000F" for g in scope.target.groups})

    monkeypatch.setattr(stack_restore, "choose", choose)
    monkeypatch.setattr(stack_restore, "wait_healthy", lambda target, timeout: events.append("healthy"))
    monkeypatch.setattr(stack_restore, "reregister", lambda target: (events.append("reregister") or [], []))
    monkeypatch.setattr(stack_restore, "row_counts", lambda dsn: {"vehicle_locations": 42})
    monkeypatch.setattr(stack_restore, "mark_left", lambda scope, point, report: events.append("marked"))
    return events


def test_pure_commands_name_the_volume_the_data_directory_and_the_groups_etcd_keys() -> None:
    plan = scope_for().plan
    member = plan.members[0]
    argv = stack_restore.move_aside(member, "sha256:img", f"{member.data_dir}.before-restore-X")
    assert argv[:8] == ["run", "--rm", "--network", "none", "--user", "postgres", "--volume",
                        f"{member.volume}:{DOCKER_DATA_MOUNT}"]
    assert argv[-2:] == [member.data_dir, f"{member.data_dir}.before-restore-X"]
    assert member.data_dir.startswith(DOCKER_DATA_MOUNT + "/")  # a directory in the volume, not its mount point
    forget = stack_restore.forget_group(plan, 2)
    assert forget[:3] == ["exec", plan.etcd[0].name, stack_restore.ETCDCTL]
    assert forget[-3:] == ["del", "--prefix", f"/service/{plan.scope}/2/"]
    assert any(flag.startswith("--cert=") for flag in forget) and any(flag.startswith("--key=") for flag in forget)
    order = stack_restore.stop_order(plan)
    assert [plan.members[[m.name for m in plan.members].index(n)].index for n in order][0] == max(
        m.index for m in plan.members)  # replicas stop first


def test_in_place_restore_sends_the_harness_steps_as_docker_commands_in_order(settled: list[str]) -> None:
    scope = scope_for({"monitoring": {"enabled": True}})
    plan = scope.plan
    docker = RecordingDocker()
    confirmed: list[str] = []
    report = stack_restore.restore_stack_in_place(scope, "dev", point="before-the-delete",
                                                  confirm=confirmed.append, docker=docker)
    n, groups = len(plan.members), len(plan.groups)
    assert docker.verbs() == ["inspect"] * n + ["stop"] + ["run"] * n + ["exec"] * groups + ["cp"] * n + [
        "start", "restart"] + ["cp"] * n + ["kill"]
    assert settled == ["choose", "healthy", "reregister", "marked"]
    # Confirmation saw the plan before any docker command; it names every volume's data directory.
    assert len(confirmed) == 1 and "the Docker stack 'dev'" in confirmed[0]
    assert all(f"{m.volume}:{m.data_dir}" in confirmed[0] for m in plan.members)
    stop = next(c for c in docker.calls if c[0] == "stop")
    assert list(stop[3:]) == stack_restore.stop_order(plan)
    start = next(c for c in docker.calls if c[0] == "start")
    assert [plan.members[[m.name for m in plan.members].index(x)].index for x in start[1:]] == sorted(
        m.index for m in plan.members)
    restart = next(c for c in docker.calls if c[0] == "restart")
    assert set(restart[1:]) == {s for m in plan.members for s in plan.sidecars(m)} and len(restart) > 1
    assert docker.calls[-1][:3] == ("kill", "--signal", "HUP")
    # The bootstrap configs went in first, the rendered ones after; each group's first member restores from its
    # backup to the point, the others clone the new leader.
    cps = [c for c in docker.calls if c[0] == "cp"]
    first, second = cps[:n], cps[n:]
    assert [c[2] for c in first] == [c[2] for c in second]
    assert all(c[2].endswith(":" + stack_restore.config_path(m)) for c, m in zip(first, plan.members, strict=True))
    assert report.moved_aside and all(v.startswith(f"{m.volume}:{m.data_dir}.before-restore-")
                                      for m, v in zip(plan.members, report.moved_aside.values(), strict=True))


def test_the_bootstrap_config_restores_each_group_from_its_backup_to_the_point(settled: list[str]) -> None:
    scope = scope_for()
    docker = RecordingDocker(fail_on="start")  # stop right after the configs went in, to read them
    with pytest.raises(BackupError):
        stack_restore.restore_stack_in_place(scope, "dev", point="before-the-delete", docker=docker)
    for m in scope.plan.members:
        doc = yaml.safe_load(docker.copied[f"{m.name}:{stack_restore.config_path(m)}"])
        if m.index == 0:
            command = doc["bootstrap"]["pgbackrest"]["command"]
            assert doc["bootstrap"]["method"] == "pgbackrest"
            assert f"--set=2026120{m.group}-000000F" in command and "--target=before-the-delete" in command
            assert doc["bootstrap"]["pgbackrest"]["recovery_conf"]["recovery_target_name"] == "before-the-delete"
        else:
            assert doc["postgresql"]["create_replica_methods"] == ["basebackup"]


def test_a_failure_after_the_stop_keeps_every_old_data_directory_and_says_how_to_go_back(
    settled: list[str],
) -> None:
    scope = scope_for()
    docker = RecordingDocker(fail_on="start")
    with pytest.raises(BackupError) as raised:
        stack_restore.restore_stack_in_place(scope, "dev", point="before-the-delete", docker=docker)
    message = str(raised.value)
    assert "Nothing was deleted" in message and "docker stop" in message
    assert all(f"{m.volume}:{m.data_dir}.before-restore-" in message for m in scope.plan.members)
    assert {c[0] for c in docker.calls} == {"inspect", "stop", "run", "exec", "cp", "start"}  # no rm, no volume rm
    assert all('mv "$1" "$2"' in " ".join(c) for c in docker.calls if c[0] == "run")  # moved, never removed


def test_a_refused_confirmation_sends_no_docker_command(settled: list[str]) -> None:
    docker = RecordingDocker()

    def refuse(plan: str) -> None:
        raise ClusterError("not confirmed")

    with pytest.raises(ClusterError, match="not confirmed"):
        stack_restore.restore_stack_in_place(scope_for(), "dev", point="p", confirm=refuse, docker=docker)
    assert docker.calls == []


def test_the_cli_restores_a_stack_in_place_only_and_confirms_with_its_name() -> None:
    parsed = _parser().parse_args(["restore", "--stack", "dev", "--to-point", "p1", "--target-harness", "/tmp/x"])
    with pytest.raises(UsageError, match="restored in place only"):
        restore_mode(parsed)
    parsed = _parser().parse_args(["restore", "--stack", "dev", "--to-point", "p1", "--in-place"])
    assert restore_mode(parsed) == "in-place"
    with pytest.raises(SystemExit):  # one of --harness and --stack
        _parser().parse_args(["restore", "--stack", "dev", "--harness", "/tmp/x", "--to-point", "p1", "--in-place"])

    class Terminal:
        def isatty(self) -> bool:
            return True

    confirm = confirmation(None, False, stdin=Terminal(), ask=lambda prompt: "dev\n", stack="dev")  # type: ignore[arg-type]
    confirm("the plan")  # the stack's name confirms
    wrong = confirmation(None, False, stdin=Terminal(), ask=lambda prompt: "prod", stack="dev")  # type: ignore[arg-type]
    with pytest.raises(ClusterError, match="not confirmed"):
        wrong("the plan")


def test_the_docker_cli_wrapper_says_what_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing CLI, a failing command and a hanging one each become a BackupError that names the command."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackupError, match="docker CLI is not on PATH"):
        DockerCli()("ps")
    fake = tmp_path / "docker"
    fake.write_text('#!/bin/sh\ncase " $* " in *" slow "*) exec /bin/sleep 5;; esac\nfor last; do :; done\n'
                    'echo "no such container: $last" >&2\nexit 1\n')
    fake.chmod(0o755)
    with pytest.raises(BackupError, match=r"`docker --host tcp://h:2376 stop gone` failed \(exit 1\):\n  no such "
                                          "container: gone"):
        DockerCli("tcp://h:2376")("stop", "gone")
    with pytest.raises(BackupError, match="`docker stop slow x` did not finish in 1 s"):
        DockerCli()("stop", "slow", "x", timeout=1)
