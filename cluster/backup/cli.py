"""`python -m cluster backup create|point|list|check` and `python -m cluster restore`.

Where the cluster is: --stack NAME (pgBackRest runs in the member containers through `docker exec`) or
--harness DIR (a local cluster; pgBackRest runs here as the postgres user).
  backup create [--type full|diff|incr] [--point NAME]   back up every group's primary, then a restore point
  backup point [--name NAME]                             a cluster-wide restore point only (between backups)
  backup list                                            backups per group and the restore points: the
                                                         coordinator's and the repository's records, and
                                                         where they disagree (works with the coordinator down)
  backup check                                           pgBackRest's check per group (archive round trip) and
                                                         the archiver's state; exit 1 when anything fails
  backup schedule [--once] [--interval S]                the backups.schedule jobs that are due (full, diff
                                                         or a restore point), from cron or left looping
  restore --harness DIR (--to-point NAME | --to-time TS) --target-harness NEW_DIR
                                                         every group restored to the same point, as a new
                                                         local cluster under Patroni (the source keeps running)
  restore --harness DIR (--to-point NAME | --to-time TS) --in-place [--yes]
                                                         the cluster at DIR itself back to the point, after
                                                         confirmation (--yes, or type DIR's name); its old data
                                                         directories are moved aside, never deleted
  restore --stack NAME (--to-point NAME | --to-time TS) --in-place [--yes]
                                                         the same for a deployed Docker stack (type the stack's
                                                         name to confirm): containers stopped and started,
                                                         data directories moved aside inside their volumes
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from cluster.backup import (
    BackupScope,
    archive_health,
    create_backup,
    create_restore_point,
    point_records,
    read_repository,
)
from cluster.backup.runner import BackupError, DockerRunner, LocalRunner
from cluster.config import load_config
from cluster.config.sources import read_stack_file, stack_file
from cluster.errors import ClusterError, UsageError
from cluster.plan import build_plan
from cluster.provision.target import resolve_target


def add_parsers(commands: Any) -> None:
    backup = commands.add_parser("backup", help="pgBackRest backups and cluster-wide restore points",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = backup.add_subparsers(dest="backup_command", required=True)
    create = sub.add_parser("create", help="back up every group, then create a restore point")
    create.add_argument("--type", choices=["full", "diff", "incr"], default="full")
    create.add_argument("--point", help="name of the restore point made after the backup (default backup-<time>)")
    point = sub.add_parser("point", help="create a cluster-wide restore point only")
    point.add_argument("--name", help="default point-<time>")
    sub.add_parser("list", help="backups per group and the restore points")
    sub.add_parser("check", help="pgBackRest check per group and archive health; exit 1 on any failure")
    schedule = sub.add_parser("schedule", help="run the backups.schedule jobs that are due (cron: --once)")
    schedule.add_argument("--once", action="store_true", help="do what is due now, then exit")
    schedule.add_argument("--interval", type=float, default=60.0, help="seconds between checks (default 60)")
    for parser in (create, point, schedule, *(sub.choices[n] for n in ("list", "check"))):
        _where(parser)
        parser.add_argument("--json", action="store_true")
    backup.set_defaults(handler=run_backup)

    restore = commands.add_parser("restore", help="restore every group to the same restore point",
                                  description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = restore.add_mutually_exclusive_group(required=True)
    source.add_argument("--harness", type=Path, metavar="DIR", help="the local cluster backed up")
    source.add_argument("--stack", help="a deployed Docker stack (in place only)")
    to = restore.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-point", metavar="NAME")
    to.add_argument("--to-time", metavar="TIMESTAMP", type=datetime.fromisoformat,
                    help="ISO 8601 with a zone, e.g. 2026-11-26T13:00:00+00:00: the latest point at or before it")
    # Exactly one of the two, checked in run_restore so the refusal says what each does (argparse would not).
    restore.add_argument("--target-harness", type=Path, metavar="NEW_DIR",
                         help="a new directory for the restored cluster (the source keeps running)")
    restore.add_argument("--in-place", action="store_true",
                         help="restore the cluster at --harness DIR itself: every member stops, the data "
                              "directories are moved aside (kept), every group bootstraps from the repository")
    restore.add_argument("--yes", action="store_true", help="confirm --in-place without the prompt")
    restore.add_argument("--json", action="store_true")
    restore.set_defaults(handler=run_restore)


def _where(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="a deployed Pulumi stack (pgBackRest runs through docker exec)")
    where.add_argument("--harness", type=Path, metavar="DIR", help="a local cluster's directory")


def resolve_scope(stack: str | None = None, harness: Path | None = None) -> BackupScope:
    """The cluster's plan, its target (through resolve_target) and where pgBackRest runs for it."""
    target = resolve_target(stack=stack, local=harness)
    if harness is not None:
        from cluster.local.harness import Harness

        return BackupScope(Harness.load(harness).plan, target, LocalRunner(str(harness)))
    config = load_config(*read_stack_file(stack_file(str(stack)))).config
    return BackupScope(build_plan(config), target, DockerRunner(config.docker_host))


def run_backup(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="  %(message)s", stream=sys.stderr)
    scope = resolve_scope(args.stack, args.harness)
    command = args.backup_command
    if command == "create":
        result = create_backup(scope, args.type, args.point)
        state: dict[str, Any] = {"type": result.kind, "point": result.point.summary(),
                                 "seconds": result.seconds, "backups": [b.summary() for b in result.backups]}
    elif command == "point":
        state = {"point": create_restore_point(scope, args.name).summary()}
    elif command == "schedule":
        from cluster.backup import schedule as jobs

        if not args.once:
            jobs.loop(scope, args.interval)
        state = {"ran": jobs.run_due(scope, datetime.now(UTC)) or "nothing due"}
    elif command == "list":
        state = listing(scope)
    else:
        return _check(scope, args.json)
    print(json.dumps(state, indent=2, default=str) if args.json else format_state(state))
    return 0


def listing(scope: BackupScope) -> dict[str, Any]:
    """Backups per group, and the restore points as each record holds them: the coordinator's table (or why it
    could not be read), the points every group's repository records, and every point the two disagree on."""
    backups, recorded = read_repository(scope)
    records = point_records(scope, recorded)
    if records.coordinator is None:
        on_coordinator: Any = f"not readable ({records.coordinator_error})"
    else:
        on_coordinator = [p.summary() for p in records.coordinator]
    return {"backups": {g: [b.summary() for b in infos] for g, infos in backups.items()},
            "restore_points": on_coordinator,
            "repository_points": [p.summary() for p in records.complete()],
            "disagreements": records.differences() or "none"}


def _check(scope: BackupScope, as_json: bool) -> int:
    problems = []
    leaders = scope.leaders()
    for group, leader in leaders.items():
        try:
            scope.pgbackrest(leader, "check", timeout=180)
        except BackupError as exc:
            problems.append(f"group {group}: {exc}")
    archive = [s.summary() for s in archive_health(scope.target, {g: m.name for g, m in leaders.items()})]
    problems += [f"{a['member']}: archive_command failing (last failed WAL {a['last_failed_wal']})"
                 for a in archive if a["failing"]]
    state = {"ok": not problems, "problems": problems, "archive": archive}
    print(json.dumps(state, indent=2) if as_json else format_state(state))
    return 0 if not problems else 1


def restore_mode(args: argparse.Namespace) -> str:
    """"in-place" or "new": exactly one of --in-place and --target-harness, --yes only with --in-place; a Docker
    stack in place only."""
    if getattr(args, "stack", None) and args.target_harness is not None:
        raise UsageError("--target-harness restores a local cluster (--harness DIR) into a new directory; a Docker "
                         "stack (--stack) is restored in place only: use --in-place (after confirmation), or "
                         "rehearse the restore on a local cluster first.")
    if args.in_place and args.target_harness is not None:
        raise UsageError("--in-place and --target-harness exclude each other: --in-place restores the cluster at "
                         "--harness DIR itself, --target-harness NEW_DIR makes a new cluster and leaves the source "
                         "running. Give one of them.")
    if not args.in_place and args.target_harness is None:
        raise UsageError("restore needs where to restore: --target-harness NEW_DIR (a new local cluster; the source "
                         "keeps running) or --in-place (the cluster at --harness DIR or --stack NAME itself, after "
                         "confirmation).")
    if args.yes and not args.in_place:
        raise UsageError("--yes confirms an in-place restore; --target-harness changes nothing of the source, so "
                         "there is nothing to confirm: drop --yes (or restore --in-place).")
    return "in-place" if args.in_place else "new"


def ask_on_stderr(prompt: str) -> str:
    """The prompt on stderr (stdout carries the report, --json included), the answer from stdin ("" at EOF)."""
    print(prompt, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline()


def confirmation(harness: Path | None, yes: bool, stdin: TextIO | None = None,
                 ask: Callable[[str], str] | None = None, stack: str | None = None) -> Callable[[str], None]:
    """What an in-place restore calls with its plan before changing anything: with --yes it only shows it;
    otherwise a person at a terminal types the harness directory's name (or the stack's). Refused up front
    (before the cluster is even read) when nobody can answer: stdin is not a terminal and --yes is absent."""
    if harness is not None:
        name, what, accepted = harness.resolve().name, "the harness directory's name", (
            harness.resolve().name, str(harness), str(harness.resolve()))
        where = f"the running cluster at {harness}"
    else:
        name, what, accepted, where = str(stack), "the stack's name", (str(stack),), f"the running stack {stack!r}"

    def show(plan: str) -> None:
        print(plan, file=sys.stderr)

    if yes:
        return show
    if not (stdin or sys.stdin).isatty():
        raise UsageError(f"restore --in-place replaces the data of {where}, and stdin is not a terminal to confirm "
                         "it on: add --yes to confirm. Nothing was changed.")

    def confirm(plan: str) -> None:
        show(plan)
        prompt = f"Type {what} ({name}) to restore it in place: "
        try:
            answer = (ask or ask_on_stderr)(prompt).strip()
        except (EOFError, KeyboardInterrupt):
            answer = ""
        if answer not in accepted:
            raise ClusterError(f"not confirmed ({answer!r} is not {name!r}): nothing was changed.")

    return confirm


def run_restore(args: argparse.Namespace) -> int:
    from cluster.backup.restore import restore_in_place, restore_into_harness

    mode = restore_mode(args)
    confirm = confirmation(args.harness, args.yes, stack=args.stack) if mode == "in-place" else None
    logging.basicConfig(level=logging.INFO, format="  %(message)s", stream=sys.stderr)
    if args.stack:
        from cluster.backup.stack_restore import restore_stack_in_place

        report = restore_stack_in_place(resolve_scope(stack=args.stack), args.stack, point=args.to_point,
                                        at=args.to_time, confirm=confirm)
    elif mode == "in-place":
        report = restore_in_place(args.harness, point=args.to_point, at=args.to_time, confirm=confirm)
    else:
        report = restore_into_harness(args.harness, args.target_harness, point=args.to_point, at=args.to_time)
    print(json.dumps(report.summary(), indent=2, default=str) if args.json else format_state(report.summary()))
    return 0


def format_state(state: dict[str, Any], indent: str = "") -> str:
    """Nested dicts and lists as indented lines: readable in a terminal under stress, greppable."""
    lines = []
    for key, value in state.items():
        if isinstance(value, dict) and value:
            lines += [f"{indent}{key}:", format_state(value, indent + "  ")]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{indent}{key}:")
            lines += [f"{indent}  - " + ", ".join(f"{k}={v}" for k, v in item.items()) for item in value]
        elif isinstance(value, list) and value and all(isinstance(item, str) for item in value):
            lines += [f"{indent}{key}:", *(f"{indent}  - {item}" for item in value)]
        else:
            lines.append(f"{indent}{key}: {value}")
    return "\n".join(lines)
