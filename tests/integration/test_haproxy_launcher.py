"""HAProxy's launcher (cluster.render.haproxy.LAUNCHER) as /bin/sh runs it, around a stand-in for HAProxy that
records the signals it gets: a changed secrets file is a SIGUSR2 (a reload), an unchanged one nothing, stop signals
are passed on, and the launcher ends with HAProxy's status. The real HAProxy under it: test_security (a stats
password rotation keeps the session and the master) and every harness test (it is how the harness starts HAProxy).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.local.processes import wait_for
from cluster.render.haproxy import LAUNCHER, RELOAD_POLL_SECONDS

# Stands in for `haproxy -W -db ...`: logs each signal it takes; TERM ends it with 143, USR1 (soft stop) with 0.
STAND_IN = """#!/bin/sh
log=$1
trap 'echo USR2 >> "$log"' USR2
trap 'echo TERM >> "$log"; exit 143' TERM
trap 'echo USR1 >> "$log"; exit 0' USR1
echo "started $$" >> "$log"
while :; do sleep 0.1; done
"""


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    (tmp_path / "launcher.sh").write_text(LAUNCHER)
    (tmp_path / "haproxy").write_text(STAND_IN)
    secrets, log = tmp_path / "stats-users.cfg", tmp_path / "signals.log"
    secrets.write_text("userlist stats_users\n    user admin insecure-password 'one'\n")
    proc = subprocess.Popen(["/bin/sh", str(tmp_path / "launcher.sh"), str(secrets), "/bin/sh",
                             str(tmp_path / "haproxy"), str(log)], start_new_session=True)
    try:
        assert wait_for(lambda: log.exists() and "started" in log.read_text(), 10), "the stand-in did not start"
        yield proc, secrets, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def signals(log: Path) -> list[str]:
    return log.read_text().split()[2:]


def test_a_new_secrets_file_reloads_and_an_unchanged_one_does_not(launched) -> None:  # type: ignore[no-untyped-def]
    proc, secrets, log = launched
    time.sleep(RELOAD_POLL_SECONDS * 2.5)
    assert signals(log) == []  # nothing changed: no reload
    staged = secrets.with_name("new")
    staged.write_text("userlist stats_users\n    user admin insecure-password 'two'\n")
    staged.replace(secrets)  # as the courier and the harness put it in place
    assert wait_for(lambda: signals(log) == ["USR2"], RELOAD_POLL_SECONDS * 5), signals(log)
    time.sleep(RELOAD_POLL_SECONDS * 2.5)
    assert signals(log) == ["USR2"]  # one reload per change
    assert proc.poll() is None


def test_term_is_passed_on_and_the_launcher_ends_with_haproxys_status(launched) -> None:  # type: ignore[no-untyped-def]
    proc, _, log = launched
    proc.send_signal(signal.SIGTERM)  # to the launcher only, as `docker stop` signals PID 1
    assert proc.wait(timeout=10) == 143
    assert signals(log) == ["TERM"]


def test_usr1_soft_stop_is_passed_on(launched) -> None:  # type: ignore[no-untyped-def]
    """The official haproxy image's STOPSIGNAL is SIGUSR1 (finish sessions, then exit)."""
    proc, _, log = launched
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=10) == 0
    assert signals(log) == ["USR1"]


def test_the_launcher_exits_when_haproxy_does(launched) -> None:  # type: ignore[no-untyped-def]
    proc, _, log = launched
    os.kill(int(log.read_text().split()[1]), signal.SIGKILL)
    assert proc.wait(timeout=10) == 128 + signal.SIGKILL
