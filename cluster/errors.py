"""The product's one exception root. Every error meant for a person derives from ClusterError, and each
command-line edge (`python -m cluster`, `python -m benchmarks`, the Pulumi program) catches it once; anything
else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import psycopg

from cluster.secrets import redact


class ClusterError(Exception):
    """An error a person can act on: the message says what was expected, what was found, and what to do."""

    exit_code = 1


class UsageError(ClusterError):
    """The command line or its environment cannot name a cluster."""

    exit_code = 2


def at_the_edge(prog: str, command: Callable[[], int]) -> int:
    """Run a command-line program's body. A ClusterError, or a database error (the server's own message says
    why), becomes one line on stderr, DSN passwords redacted, and the exit code; anything else propagates."""
    try:
        return command()
    except ClusterError as exc:
        print(f"{prog}: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except psycopg.Error as exc:
        print(f"{prog}: {redact(str(exc).strip())}", file=sys.stderr)
        return 1
