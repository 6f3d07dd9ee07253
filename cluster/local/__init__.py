"""Local clusters: the rendered files run as real processes on this machine (etcd, Patroni + PostgreSQL, HAProxy).

The same files the containers run, for tests, benchmarks and trying the cluster without Docker
(`python -m cluster local up|down`). Import from the submodules: `cluster.local.harness`, `cluster.local.processes`.
"""
