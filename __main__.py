"""Pulumi entry point: everything lives in the cluster package (see cluster/stack.py)."""

from cluster.stack import run

run()
