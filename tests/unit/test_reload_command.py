"""The command provisioning runs through COPY ... TO PROGRAM to make Patroni or PgBouncer reread their files
(cluster/provision/delivery.py reload_command), run here by a real /bin/sh as PostgreSQL runs it: COPY writes its
row into the program's stdin and then closes the pipe."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from cluster.provision.delivery import reload_command


def test_the_command_reads_copys_row_before_it_signals_and_then_sighups_the_pid(tmp_path: Path) -> None:
    marker = tmp_path / "hup"
    target = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, signal, time\n"
        f"signal.signal(signal.SIGHUP, lambda *_: pathlib.Path({str(marker)!r}).write_text('1'))\n"
        "time.sleep(30)\n")])
    try:
        pid_file = tmp_path / "with space.pid"
        pid_file.write_text(f"{target.pid}\n")
        time.sleep(0.3)  # the target's handler is in place
        program = subprocess.Popen(["/bin/sh", "-c", reload_command(str(pid_file))], stdin=subprocess.PIPE)
        time.sleep(0.3)
        # Still there, reading: a command that exited now would make COPY's write fail with a broken pipe.
        assert program.poll() is None
        assert not marker.exists()
        program.stdin.write(b"1\n")  # type: ignore[union-attr]
        program.stdin.close()  # type: ignore[union-attr]
        assert program.wait(timeout=5) == 0
        deadline = time.monotonic() + 5
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.read_text() == "1"
    finally:
        target.send_signal(signal.SIGTERM)
        target.wait(timeout=5)
