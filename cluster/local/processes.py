"""Starting, signalling and waiting for the harness's server processes. The only place that forks.

PostgreSQL refuses to run as root, so when the harness runs as root every server runs as the `postgres`
OS user (set in the child itself, so the PID we record is the server's and not a wrapper's).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cluster.errors import ClusterError
from cluster.local import cpuhosts

RUN_AS = "postgres"


class HarnessError(ClusterError):
    """The harness could not bring something up; the message says what, and where its log is."""


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: str
    pid: int = 0
    netns: str = ""  # the network namespace it runs in (namespaced harness); "" = the root namespace
    cgroup: str = ""  # the cpu cgroup of its host (cluster/local/cpuhosts.py); "" = not held to a quota

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def tail(self, lines: int = 15) -> str:
        try:
            text = Path(self.log).read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


def server_user() -> pwd.struct_passwd | None:
    """The user servers run as: `postgres` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(RUN_AS)
    except KeyError:
        raise HarnessError(f"running as root but there is no '{RUN_AS}' user; install postgresql") from None


def give_to_server_user(path: Path) -> None:
    """Make `path` (recursively) owned by the server user, private to it."""
    user = server_user()
    if user is None:
        return
    for root, dirs, files in os.walk(path):
        for entry in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
            os.chown(entry, user.pw_uid, user.pw_gid)


def check_reachable(path: str, fix: str) -> None:
    """The server user must be able to execute (or traverse) `path`; say how to fix it if not."""
    user = server_user()
    if user is None:
        return
    probe = subprocess.run(["runuser", "-u", RUN_AS, "--", "test", "-x", path], capture_output=True)
    if probe.returncode != 0:
        raise HarnessError(
            f"'{RUN_AS}' cannot reach {path}. Servers run as '{RUN_AS}' because PostgreSQL refuses root: {fix}"
        )


def start(proc: Proc, env: dict[str, str] | None = None, cwd: str | None = None) -> Proc:
    user = server_user()
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    if user is not None:
        full_env["HOME"] = user.pw_dir
    full_env.update(env or {})
    argv, as_user = proc.argv, user
    if proc.netns:  # entering a namespace needs root: the wrappers switch to the server user and exec in place
        if user is None:
            raise HarnessError(f"{proc.name}: the namespaced harness must run as root (it creates namespaces)")
        argv, as_user = namespace_argv(proc.netns, user.pw_uid, user.pw_gid, proc.argv), None
    if proc.cgroup:  # the shell joins the group as root, then execs the (user-switching) command in place
        if as_user is not None:
            argv, as_user = as_server_user(as_user.pw_uid, as_user.pw_gid, argv), None
        argv = cpuhosts.enter_argv(proc.cgroup, argv)
    with open(proc.log, "ab") as log:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,  # its own process group: signals reach it and its children only
            **({"user": as_user.pw_uid, "group": as_user.pw_gid, "extra_groups": []} if as_user else {}),
        )
    proc.pid = child.pid
    return proc


def raise_open_files(wanted: int = 65536) -> int:
    """Raise this process's soft limit on open files towards `wanted` (never past the hard limit), so the servers
    it starts inherit it: a thousand clients are a thousand sockets in HAProxy (twice) and PgBouncer. Returns the
    soft limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def namespace_argv(namespace: str, uid: int, gid: int, argv: list[str]) -> list[str]:
    """`argv` run inside `namespace` as uid/gid. Both wrappers exec in place, so the PID stays the server's."""
    return ["ip", "netns", "exec", namespace, *as_server_user(uid, gid, argv)]


def as_server_user(uid: int, gid: int, argv: list[str]) -> list[str]:
    """`argv` run as uid/gid by setpriv, which execs in place."""
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv]


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child not yet reaped) counts as dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            _reap(pid)
            return False
    except OSError:
        return False
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal `pid` and every process of its group (a server and its children die together, as in a container).

    The group is looked up, not assumed: Patroni starts the postmaster in a session led by a helper that
    has already exited, so the postmaster's group id is not its own PID.
    """
    if pid <= 0:
        return
    try:
        group = os.getpgid(pid)
        if group == os.getpgrp():  # never signal our own group
            os.kill(pid, sig)
        else:
            os.killpg(group, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def children(pid: int) -> list[int]:
    """Direct children of `pid` (PostgreSQL's backends each lead their own process group)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def stop(*pids: int, timeout: float = 30.0) -> None:
    """SIGTERM the groups together, wait, then SIGKILL: stopping never hangs and never leaves a process behind."""
    live = [pid for pid in pids if pid_alive(pid)]
    for pid in live:
        signal_group(pid, signal.SIGTERM)
    if not wait_for(lambda: not any(pid_alive(pid) for pid in live), timeout):
        for pid in live:
            signal_group(pid, signal.SIGKILL)
        wait_for(lambda: not any(pid_alive(pid) for pid in live), 10)
    for pid in live:
        _reap(pid)


def wait_for(condition: Callable[[], object], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def require_binary(name: str, hint: str) -> str:
    found = shutil.which(name)
    if not found:
        raise HarnessError(f"'{name}' is not on PATH: {hint}")
    return found


def run_as_server_user(argv: list[str], timeout: float, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a short command (pgBackRest, say) to completion as the server user; its output comes back as text."""
    user = server_user()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    if user is not None:
        env["HOME"] = user.pw_dir
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
        **({"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}),  # type: ignore[arg-type]
    )
