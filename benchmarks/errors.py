"""Benchmark failures a person can act on; they share the product's root, so each CLI edge catches one class."""

from __future__ import annotations

from cluster.errors import ClusterError


class BenchmarkError(ClusterError):
    """A benchmark or drill could not run or finish: what it waited for or found, and what to check."""
