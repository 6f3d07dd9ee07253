"""`python -m cluster restore`: --in-place or --target-harness, the confirmation, and what a restore starts from
(pure: the restore itself is replaced by a stand-in function, so no process starts)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cluster.__main__ import _parser, main
from cluster.backup import BackupInfo, RestorePoint
from cluster.backup import restore as restore_module
from cluster.backup.cli import confirmation, restore_mode
from cluster.backup.restore import RestoreReport, require_point_on_every_group
from cluster.errors import ClusterError, UsageError
from cluster.local.harness import prefix_range

POINT = RestorePoint("p1", datetime(2026, 12, 2, 12, 0, 30, 500_000, tzinfo=UTC))


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def args(*extra: str) -> object:
    return _parser().parse_args(["restore", "--harness", "/tmp/cluster-x", "--to-point", "p1", *extra])


@pytest.fixture
def no_restore(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    """Both restores replaced: each call is recorded; the in-place one asks for confirmation as the real one
    does (after settling the point, before touching anything) and returns a report."""
    calls: list[tuple[str, dict]] = []

    def in_place(harness_dir: Path, point=None, at=None, confirm=None, timeout=900.0) -> RestoreReport:  # noqa: ANN001
        calls.append(("in-place", {"dir": harness_dir, "point": point}))
        if confirm is not None:
            confirm("restore IN PLACE: the plan")
        calls.append(("touched", {}))
        return RestoreReport(POINT, str(harness_dir), 12.5, moved_aside={"h-coord-0": "/d/data.before-restore-x"})

    def into(source: Path, new: Path, point=None, at=None, timeout=900.0) -> RestoreReport:  # noqa: ANN001
        calls.append(("new", {"dir": new, "point": point}))
        return RestoreReport(POINT, str(new), 20.0)

    monkeypatch.setattr(restore_module, "restore_in_place", in_place)
    monkeypatch.setattr(restore_module, "restore_into_harness", into)
    return calls


def test_exactly_one_of_in_place_and_target_harness() -> None:
    assert restore_mode(args("--in-place")) == "in-place"
    assert restore_mode(args("--target-harness", "/tmp/new")) == "new"
    with pytest.raises(UsageError, match="--in-place and --target-harness exclude each other.*Give one of them"):
        restore_mode(args("--in-place", "--target-harness", "/tmp/new"))
    with pytest.raises(UsageError, match="--target-harness NEW_DIR .* or --in-place"):
        restore_mode(args())
    with pytest.raises(UsageError, match="--yes confirms an in-place restore.*drop --yes"):
        restore_mode(args("--target-harness", "/tmp/new", "--yes"))


def test_usage_errors_exit_2_before_any_cluster_is_read(
    no_restore: list, capsys: pytest.CaptureFixture
) -> None:
    base = ["restore", "--harness", "/nonexistent/cluster", "--to-point", "p1"]
    assert main([*base, "--in-place", "--target-harness", "/tmp/new"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main(base) == 2
    assert "needs where to restore" in capsys.readouterr().err
    assert no_restore == []


def test_in_place_without_yes_refuses_when_stdin_is_not_a_terminal(
    no_restore: list, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("cluster-x\n"))  # piped: nobody to ask, even with the answer
    assert main(["restore", "--harness", "/tmp/cluster-x", "--to-point", "p1", "--in-place"]) == 2
    err = capsys.readouterr().err
    assert "stdin is not a terminal" in err and "add --yes" in err and "Nothing was changed" in err
    assert no_restore == []


def test_yes_confirms_and_the_report_names_the_moved_aside_directories(
    no_restore: list, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["restore", "--harness", "/tmp/cluster-x", "--to-point", "p1", "--in-place", "--yes",
                 "--json"]) == 0
    captured = capsys.readouterr()
    assert "restore IN PLACE: the plan" in captured.err  # shown even when confirmed in advance
    report = json.loads(captured.out)
    assert report["moved_aside"] == {"h-coord-0": "/d/data.before-restore-x"}
    assert [c[0] for c in no_restore] == ["in-place", "touched"]


def test_target_harness_still_restores_into_a_new_directory(no_restore: list, capsys: pytest.CaptureFixture) -> None:
    assert main(["restore", "--harness", "/tmp/cluster-x", "--to-point", "p1", "--target-harness", "/tmp/n"]) == 0
    assert no_restore == [("new", {"dir": Path("/tmp/n"), "point": "p1"})]
    assert "moved_aside" not in capsys.readouterr().out


def test_the_prompt_wants_the_harness_directory_name(capsys: pytest.CaptureFixture) -> None:
    prompts: list[str] = []

    def answer(text: str) -> object:
        return lambda prompt: prompts.append(prompt) or text

    harness = Path("/tmp/cluster-x")
    confirmation(harness, False, Terminal(), answer("cluster-x\n"))("the plan")
    confirmation(harness, False, Terminal(), answer("/tmp/cluster-x"))("the plan")  # the path as given also
    assert "cluster-x" in prompts[0] and "the plan" in capsys.readouterr().err
    for wrong in ("yes", "y", "", "cluster"):  # "" is also what end of input (Ctrl-D) gives
        with pytest.raises(ClusterError, match="not confirmed.*nothing was changed"):
            confirmation(harness, False, Terminal(), answer(wrong))("the plan")
    with pytest.raises(UsageError, match="add --yes"):
        confirmation(harness, False, io.StringIO("cluster-x"), answer("cluster-x"))


def test_a_declined_prompt_changes_nothing(
    no_restore: list, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr("sys.stdin", Terminal("no\n"))
    assert main(["restore", "--harness", "/tmp/cluster-x", "--to-point", "p1", "--in-place"]) == 1
    captured = capsys.readouterr()
    assert "Type the harness directory's name (cluster-x)" in captured.err and captured.out == ""
    assert "not confirmed ('no' is not 'cluster-x'): nothing was changed" in captured.err
    assert [c[0] for c in no_restore] == ["in-place"]  # never reached "touched"


def backup(group: int, label: str, stopped: datetime) -> BackupInfo:
    return BackupInfo(group, label, "full", stopped - timedelta(seconds=5), stopped.replace(microsecond=0),
                      1, 1)


def test_each_group_starts_from_its_latest_backup_before_the_point() -> None:
    at = POINT.created_at
    backups = {
        0: [backup(0, "old", at - timedelta(hours=1)), backup(0, "base", at - timedelta(seconds=3)),
            backup(0, "later", at + timedelta(minutes=5))],  # ended after the point: can never replay to it
        1: [backup(1, "base", at - timedelta(seconds=3)), backup(1, "same-second", at)],  # maybe after: avoided
        2: [backup(2, "only", at)],  # its only one ended in the point's second: used (create_backup's case)
    }
    assert require_point_on_every_group(backups, [0, 1, 2], POINT) == {0: "base", 1: "base", 2: "only"}
    with pytest.raises(Exception, match=r"does not exist on every group: groups \[2\]"):
        require_point_on_every_group({**backups, 2: [backup(2, "late", at + timedelta(seconds=1))]},
                                     [0, 1, 2], POINT)


def test_bootstrap_restores_the_chosen_backup_set() -> None:
    from cluster.config import load_config
    from cluster.plan import build_plan
    from cluster.render import pgbackrest

    plan = build_plan(load_config({"name": "c"}).config)
    member = plan.groups[1][0]
    command = pgbackrest.bootstrap_from_backup(plan, member, "/repo", "p1", "20261202-120000F")["pgbackrest"]
    assert "--set=20261202-120000F --type=name --target=p1 restore" in command["command"]
    unset = pgbackrest.bootstrap_from_backup(plan, member, "/repo", "p1")["pgbackrest"]["command"]
    assert "--set" not in unset


def test_a_group_prefix_covers_that_group_only() -> None:
    key, end = prefix_range("/service/h/1/")
    assert (key, end) == (b"/service/h/1/", b"/service/h/10")
    assert key <= b"/service/h/1/leader" < end
    assert not key <= b"/service/h/10/leader" < end and not key <= b"/service/h/2/leader" < end
