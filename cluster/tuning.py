"""PostgreSQL and Citus settings derived from the stack config: defaults that fit the machines the config
describes instead of PostgreSQL's and Citus's one-size defaults. Pure: config in, settings out.

What each derived value is for was measured on the seed's workload (issue 16: the 5 km radius query, 33k of
1M rows, coordinator pair + 2 worker pairs, 12 shards, 2 shared cores). With the shipped defaults the cluster
ran it 2.1x slower than a single node; the time went to three things these settings remove:

- the adaptive executor opened ~4.8 new connections to the workers per query beyond the one cached connection
  per worker, and closed them afterwards: each fresh PostGIS backend costs ~7 ms to connect and 24-40 ms on its
  first shard query (citus.max_adaptive_executor_pool_size, citus.max_cached_conns_per_worker);
- JIT compiled every shard query, because PostGIS gives ST_DWithin a high cost, and cost more than it saved
  (57-278 ms on a single node) (jit);
- a parallel scan inside every shard on top of Citus's own fan-out fought for the same cores
  (max_parallel_workers_per_gather; measured 431 -> 239 ms p50 on 1M rows).

Memory settings follow resources.database.memoryMb, the limit every database member runs under.

Precedence (cluster.render.patroni.postgres_parameters): the product's fixed settings, then these, then the
user's postgresql.parameters, which always win. None of these is plan-owned: the guards never refuse them.
"""

from __future__ import annotations

import math

from cluster.config.models import ClusterConfig, ParameterValue

# Resources.database.cpus unset: members share a host whose CPUs the config does not say, so each member is
# counted as one CPU (the choice that never opens more connections or parallel workers than a core can run).
UNKNOWN_CPUS = 1.0
MAX_POOL = 16  # Citus's own default for citus.max_adaptive_executor_pool_size: never derive above it
MAX_PARALLEL_PER_GATHER = 8  # PostgreSQL's default max_parallel_workers: more could never start
# Concurrent sort/hash nodes the memory left beside shared_buffers is sized for (e.g. 16 sessions with a few
# nodes each): work_mem is per node and per backend, so it is a share of memory, not the whole of it.
WORK_MEM_SHARES = 64
MIN_WORK_MEM_MB = 4  # PostgreSQL's default: derived values never go below it

# The reason for each derived setting, one line each (the config reference lists them).
REASONS: dict[str, str] = {
    "citus.max_adaptive_executor_pool_size": "connections a query opens per worker: the worker's CPUs (at most "
    "its shards per worker group); more only adds fresh backends (~7 ms connect + 24-40 ms first PostGIS query "
    "each) competing for the same cores",
    "citus.max_cached_conns_per_worker": "connections kept open per worker between queries: the pool size, so a "
    "session never reconnects for the connections the pool opens",
    "jit": "always off: PostGIS gives ST_DWithin a high cost, so JIT compiled every shard query and cost more "
    "than it saved",
    "max_parallel_workers_per_gather": "parallel workers inside one shard query: the worker's CPUs left over "
    "when each of its shards runs at once (0 when shards per worker group >= its CPUs)",
    "shared_buffers": "a quarter of resources.database.memoryMb",
    "effective_cache_size": "three quarters of resources.database.memoryMb (a planner estimate, nothing is "
    "allocated)",
    "work_mem": f"(memoryMb - shared_buffers) / {WORK_MEM_SHARES}, at least {MIN_WORK_MEM_MB} MB",
}


def member_cpus(config: ClusterConfig) -> float:
    """The CPUs one database member runs on: resources.database.cpus, or UNKNOWN_CPUS when unset."""
    cpus = config.resources.database.cpus
    return UNKNOWN_CPUS if cpus is None else cpus


def shards_per_worker(config: ClusterConfig) -> int:
    """Shards of a distributed table on each worker group (citus.shardCount spread over workers.groups)."""
    return math.ceil(config.citus.shard_count / config.workers.groups)


def executor_pool_size(config: ClusterConfig) -> int:
    """citus.max_adaptive_executor_pool_size: how many connections one query may open to one worker.

    A worker runs at most as many of a query's shard tasks at once as it has CPUs; a larger pool only opens
    fresh backends (measured: ~4.8 extra per query with Citus's default of 16, each ~7 ms to connect plus
    24-40 ms on its first PostGIS query) that then compete for the same cores. Never more than the shards a
    worker group holds (no query has more tasks there), never less than 1, never above Citus's default.
    """
    cores = max(1, math.floor(member_cpus(config)))
    return max(1, min(cores, shards_per_worker(config), MAX_POOL))


def cached_connections(config: ClusterConfig) -> int:
    """citus.max_cached_conns_per_worker: connections a session keeps to each worker after a query.

    Citus's default keeps one and closes the rest of what the pool opened, so the next query connects again;
    keeping the pool's size means a busy session reuses warm backends (PostGIS loaded, plans cached).
    """
    return executor_pool_size(config)


def parallel_workers_per_gather(config: ClusterConfig) -> int:
    """max_parallel_workers_per_gather: extra processes one shard query may start on its worker.

    Citus already runs a query's shards on a worker side by side; a parallel scan inside each only pays off with
    CPUs left over once every shard of the worker has one. 0 when shards per worker group >= its CPUs (measured
    on 2 cores, 12 shards, 1M rows: 5 km radius 431 -> 239 ms p50 without parallel scans).
    """
    per_shard = math.floor(member_cpus(config) / shards_per_worker(config))
    return max(0, min(per_shard - 1, MAX_PARALLEL_PER_GATHER))


def memory_parameters(config: ClusterConfig) -> dict[str, str]:
    """shared_buffers, effective_cache_size and work_mem from the member's memory limit.

    shared_buffers: a quarter of the limit (PostgreSQL's guidance for a dedicated server; the guard allows up
    to half). effective_cache_size: three quarters, what shared buffers plus the page cache can hold (only the
    planner reads it: index scans look cheaper when the index is likely cached). work_mem: the memory beside
    shared_buffers split over WORK_MEM_SHARES concurrent sort/hash nodes, at least PostgreSQL's 4 MB.
    """
    memory = config.resources.database.memory_mb
    shared = memory // 4
    work = max(MIN_WORK_MEM_MB, (memory - shared) // WORK_MEM_SHARES)
    return {"shared_buffers": f"{shared}MB", "effective_cache_size": f"{memory * 3 // 4}MB", "work_mem": f"{work}MB"}


def derived_parameters(config: ClusterConfig) -> dict[str, ParameterValue]:
    """Every derived setting (see REASONS); the caller lays the user's postgresql.parameters over them."""
    return {
        "citus.max_adaptive_executor_pool_size": executor_pool_size(config),
        "citus.max_cached_conns_per_worker": cached_connections(config),
        "jit": "off",
        "max_parallel_workers_per_gather": parallel_workers_per_gather(config),
        **memory_parameters(config),
    }


def effective_parameters(config: ClusterConfig) -> dict[str, ParameterValue]:
    """The derived settings with the user's postgresql.parameters on top (the user's always win)."""
    return {**derived_parameters(config), **config.postgresql.parameters}
