"""Where pgBackRest runs: on the member itself, as the `postgres` OS user, with that member's rendered config.

pgBackRest backs up and restores the data directory it can read, so it runs where the data is: a process of the
harness machine (the harness's members are local directories), or `docker exec` into the member's container
(the repository volume is mounted there). Provisioning over DSNs and REST alone cannot do that, so the backup
commands carry a runner next to the ClusterTarget.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from typing import Protocol

from cluster.errors import ClusterError
from cluster.local import processes
from cluster.plan import Member


class BackupError(ClusterError):
    """A backup, restore point, restore or repository check failed; the message says where and what to do."""


class Runner(Protocol):
    def run(self, member: Member, argv: list[str], timeout: float) -> str: ...


def _checked(member: Member, argv: list[str], done: subprocess.CompletedProcess[str]) -> str:
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-6:]
        raise BackupError(f"`{shlex.join(argv)}` on {member.name} failed (exit {done.returncode}):\n  "
                          + "\n  ".join(detail))
    return done.stdout


@dataclass(frozen=True)
class LocalRunner:
    """The harness: members are directories of this machine; commands run as the server user."""

    cwd: str

    def run(self, member: Member, argv: list[str], timeout: float) -> str:
        return _checked(member, argv, processes.run_as_server_user(argv, timeout, cwd=self.cwd))


@dataclass(frozen=True)
class DockerCli:
    """One docker CLI command (the arguments after `docker`) on the stack's docker host (if remote): its stdout,
    or a BackupError that shows the command and the end of what it said."""

    docker_host: str | None = None

    def __call__(self, *args: str, timeout: float = 120.0) -> str:
        argv = ["docker", *(["--host", self.docker_host] if self.docker_host else []), *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise BackupError("the docker CLI is not on PATH; backups and restores of a Docker stack run through it "
                              "(pgBackRest inside the member containers, their stop and start)") from None
        except subprocess.TimeoutExpired:
            raise BackupError(f"`{shlex.join(argv)}` did not finish in {timeout:.0f} s") from None
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-6:]
            raise BackupError(f"`{shlex.join(argv)}` failed (exit {done.returncode}):\n  " + "\n  ".join(detail))
        return done.stdout


@dataclass(frozen=True)
class DockerRunner:
    """A Docker stack: `docker exec -u postgres <member container>` (on the stack's docker host, if remote)."""

    docker_host: str | None = None

    def run(self, member: Member, argv: list[str], timeout: float) -> str:
        return DockerCli(self.docker_host)("exec", "--user", "postgres", member.name, *argv, timeout=timeout)
