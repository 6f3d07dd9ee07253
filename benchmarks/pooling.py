"""What PgBouncer buys and costs (issue 15): clients served with and without it, and the latency it adds.

- **Clients served**: `n` clients connect at once as the application role, hold their sessions until every one
  is in (or failed), then each runs the seed's radius and bbox queries. Without PgBouncer they dial the
  coordinator leader's PostgreSQL, whose max_connections caps them; with it they dial HAProxy's read-write port
  (-> the leader's PgBouncer). A client is served when it connected and both queries succeeded.
- **Latency added**: 16 clients run the same queries back to back for a while, alternately straight to the
  leader's PostgreSQL and to the leader's PgBouncer (HAProxy is left out of both, so the difference is
  PgBouncer's), p50/p95 per path, in the same run.

Every pooled connection sets `prepare_threshold=None`: PgBouncer 1.18 cannot carry psycopg's server-side
prepared statements from one transaction to the next.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.stats import percentile
from benchmarks.workload import QUERIES, TABLE

SERVED_QUERIES = ("radius_5km", "bbox")
LATENCY_QUERIES = ("radius_5km", "vehicle_track")


def query_sql(name: str) -> str:
    query = next(q for q in QUERIES if q.name == name)
    return query.sql.format(table=TABLE)


@dataclass
class Served:
    clients: int
    connected: int = 0
    served: int = 0
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)  # first line of each error -> how many clients

    def to_dict(self) -> dict[str, Any]:
        return {"clients": self.clients, "connected": self.connected, "served": self.served,
                "seconds": round(self.seconds, 2), "errors": self.errors}


async def _serve(dsn: str, clients: int, queries: tuple[str, ...], connect_timeout: float,
                 during: Any = None) -> Served:
    """`clients` sessions at once: all connect, wait for each other, then run `queries`; `during()` (if given)
    runs while every session is open (e.g. to count the server's backends)."""
    result = Served(clients)
    texts = [query_sql(q) for q in queries]
    gate = asyncio.Event()
    arrived = 0
    lock = asyncio.Lock()
    params = {"now": datetime.now(timezone.utc)}

    def error(exc: BaseException) -> None:
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        result.errors[line] = result.errors.get(line, 0) + 1

    async def client() -> None:
        nonlocal arrived
        conn = None
        try:
            try:
                conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=connect_timeout,
                                                             prepare_threshold=None)
                result.connected += 1
            finally:
                async with lock:
                    arrived += 1
                    if arrived == clients:
                        gate.set()
            await gate.wait()
            if conn is None:
                return
            for text in texts:
                cur = await conn.execute(text, params if "%(now)s" in text else None)
                await cur.fetchall()
            result.served += 1
        except (psycopg.Error, OSError) as exc:
            error(exc)
        finally:
            if conn is not None:
                await conn.close()

    started = time.monotonic()
    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    if during is not None:
        await gate.wait()
        await asyncio.to_thread(during)
    await asyncio.gather(*tasks)
    result.seconds = time.monotonic() - started
    return result


def serve(dsn: str, clients: int, queries: tuple[str, ...] = SERVED_QUERIES, connect_timeout: float = 30.0,
          during: Any = None) -> Served:
    return asyncio.run(_serve(dsn, clients, queries, connect_timeout, during))


def max_clients(dsn: str, steps: list[int], queries: tuple[str, ...] = SERVED_QUERIES) -> dict[str, Any]:
    """Served clients at each step of `steps`; stops after the first step where not every client was served."""
    runs = []
    for n in steps:
        run = serve(dsn, n, queries)
        runs.append(run.to_dict())
        if run.served < n:
            break
    best = max((r["served"] for r in runs if r["served"] == r["clients"]), default=0)
    return {"all_served_up_to": best, "most_served": max(r["served"] for r in runs), "runs": runs}


def latency(dsns: dict[str, str], clients: int = 16, seconds: float = 10.0, rounds: int = 3,
            queries: tuple[str, ...] = LATENCY_QUERIES) -> dict[str, Any]:
    """p50/p95 (ms) per path and query, `clients` threads; the paths alternate `rounds` times (same run)."""
    samples: dict[str, dict[str, list[float]]] = {p: {q: [] for q in queries} for p in dsns}
    errors: dict[str, int] = {p: 0 for p in dsns}
    texts = {q: query_sql(q) for q in queries}
    params = {"now": datetime.now(timezone.utc)}
    for _ in range(rounds):
        for path, dsn in dsns.items():
            stop = time.monotonic() + seconds / rounds

            def worker(path: str = path, dsn: str = dsn, stop: float = stop) -> None:
                with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
                    while time.monotonic() < stop:
                        for name, text in texts.items():
                            began = time.perf_counter()
                            try:
                                conn.execute(text, params if "%(now)s" in text else None).fetchall()
                            except psycopg.Error:
                                errors[path] += 1
                                continue
                            samples[path][name].append((time.perf_counter() - began) * 1000)

            threads = [threading.Thread(target=worker) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    report: dict[str, Any] = {"clients": clients, "seconds_per_path": seconds, "errors": errors, "paths": {}}
    for path, per_query in samples.items():
        report["paths"][path] = {
            q: {"n": len(v), "p50_ms": round(percentile(v, 50), 2), "p95_ms": round(percentile(v, 95), 2)}
            for q, v in per_query.items() if v
        }
    direct, pooled = list(dsns)[:2]
    report["added_ms"] = {
        q: {p: round(report["paths"][pooled][q][p] - report["paths"][direct][q][p], 2) for p in ("p50_ms", "p95_ms")}
        for q in queries if q in report["paths"][direct] and q in report["paths"][pooled]
    }
    return report


# ---- `python -m benchmarks pooling --harness DIR` ---------------------------------------------------------------
def harness_paths(directory: Path) -> dict[str, Any]:
    """The application role's DSNs of a local cluster: through HAProxy (-> PgBouncer), straight to the coordinator
    leader's PostgreSQL, straight to its PgBouncer; and the leader's superuser DSN (to load and to count)."""
    from cluster.local.harness import Harness

    h = Harness.load(directory)
    leader = h.leader(0)
    member = h.member(leader)
    if member.pooler is None:
        raise ValueError("this cluster runs without PgBouncer (pooling.enabled: false)")
    user, password = h.config.citus.app_user, h.passwords.app
    return {
        "leader": leader,
        "rw": h.plan.dsn("read-write", password, user=user),
        "direct": h.plan.member_dsn(member, password, user=user),
        "pooler": h.pooler_dsn(leader, user=user, password=password),
        "admin_rw": h.dsn(),
        "admin_leader": h.member_dsn(leader),
    }


def run(directory: Path, out: Path, steps: list[int], seconds: float, rows: int, meta: dict[str, Any]) -> dict:
    from benchmarks import steps as bench_steps
    from benchmarks.workload import Dataset

    paths = harness_paths(directory)
    with psycopg.connect(paths["admin_leader"], autocommit=True) as conn:
        max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
        present = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    if present < rows:
        bench_steps.load(paths["admin_rw"], Dataset(rows), parallel=2)
    results: dict[str, Any] = {"meta": {**meta, "leader": paths["leader"], "max_connections": max_connections,
                                        "rows": max(rows, present)}}
    results["max_clients"] = {
        "without_pgbouncer": max_clients(paths["direct"], steps),
        "with_pgbouncer": max_clients(paths["rw"], steps),
    }
    results["latency_16"] = latency({"direct": paths["direct"], "pgbouncer": paths["pooler"]}, 16, seconds)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "report.md").write_text(report(results))
    return results


def _short(error: str) -> str:
    """The server's words of a connection error (libpq puts them after the address)."""
    return error.rsplit("failed: ", 1)[-1][:100]


def report(results: dict[str, Any]) -> str:
    meta, served, lat = results["meta"], results["max_clients"], results["latency_16"]
    lines = [
        "# PgBouncer: clients served and latency added",
        "",
        f"Command: `{meta.get('command', '')}`  ",
        f"Started: {meta.get('started', '')}; coordinator max_connections = {meta['max_connections']}; "
        f"{meta['rows']} rows; every client is the application role over verified TLS.",
        "",
        "## Clients served at once (connect all, then each runs radius 5 km + bbox)",
        "",
        "| path | clients tried | connected | served | seconds | errors |",
        "|---|---|---|---|---|---|",
    ]
    for path, found in served.items():
        for r in found["runs"]:
            errors = "; ".join(f"{n} x {_short(e)}" for e, n in r["errors"].items()) or "none"
            lines.append(f"| {path} | {r['clients']} | {r['connected']} | {r['served']} | {r['seconds']} | "
                         f"{errors} |")
    lines += [
        "",
        "Most clients served at once: without PgBouncer "
        f"**{served['without_pgbouncer']['most_served']}** (every client up to "
        f"{served['without_pgbouncer']['all_served_up_to']}), with PgBouncer "
        f"**{served['with_pgbouncer']['most_served']}** (every client up to "
        f"{served['with_pgbouncer']['all_served_up_to']}, the most tried).",
        "",
        f"## Latency at {lat['clients']} clients (ms; straight to the leader's PostgreSQL vs its PgBouncer, "
        "no HAProxy in either; paths alternated in one run)",
        "",
        "| query | direct p50 | direct p95 | PgBouncer p50 | PgBouncer p95 | added p50 | added p95 |",
        "|---|---|---|---|---|---|---|",
    ]
    for q, added in lat["added_ms"].items():
        d, p = lat["paths"]["direct"][q], lat["paths"]["pgbouncer"][q]
        lines.append(f"| {q} | {d['p50_ms']} | {d['p95_ms']} | {p['p50_ms']} | {p['p95_ms']} | "
                     f"{added['p50_ms']} | {added['p95_ms']} |")
    lines += ["", f"Errors during the latency run: {lat['errors']}", ""]
    return "\n".join(lines)


def raise_open_files() -> int:
    """A thousand clients are a thousand sockets in this process too."""
    from cluster.local.processes import raise_open_files as raise_limit

    return raise_limit()
