"""The product's one exception root. Every error meant for a person derives from ClusterError, and each
command-line edge (`python -m cluster`, `python -m benchmarks`, the Pulumi program) catches it once; anything
else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class ClusterError(Exception):
    """An error a person can act on: the message says what was expected, what was found, and what to do."""

    exit_code = 1


class UsageError(ClusterError):
    """The command line or its environment cannot name a cluster."""

    exit_code = 2
