"""A small history checker for the HA drills, after Jepsen's: record every operation, then judge the history.

A drill's clients record each operation they try (`Op`: who, what, when it started and ended, how it ended and
the value it wrote or read, and the server that answered). After the drill the table is read once more
(`final`: every id present) and `check` decides, without any cluster at hand:

- **no acknowledged write lost**: every write that returned ok is in `final`; a failed write may or may not be
  there (Jepsen's *info*: its COMMIT may have run even though the reply was lost), so it is only counted;
- **no half-committed write**: a write of several rows (ids `value` and `-value`, one transaction across
  shards) is in `final` whole or not at all;
- **one timeline at a time**: ordered by acknowledgement time, the writes' servers form runs; a server that
  acknowledges again after another took over means two leaders accepted writes (split brain), and the
  overlap of the runs' spans is the window in which both did;
- **no split-brain window by probe**: probes ask each member directly, from the clients' side, whether it
  accepts writes (`value` 1); the time in which two members of one group did so at once must be zero;
- **reads on the read-write endpoint never go back in time**: a read (here a count of the rows) returns at
  least what any read that finished before it began returned.

Counted but not a violation of the above: reads that saw fewer rows than writes acknowledged before they began
(`unseen_acknowledged`). Citus acknowledges a multi-shard write once the coordinator commits; a worker that
missed its COMMIT PREPARED (cut off at that moment) shows the row only after two-phase commit recovery. The
final read after recovery still has to find every acknowledged write.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["write", "read", "probe"]
Outcome = Literal["ok", "fail"]


@dataclass(frozen=True)
class Op:
    kind: Kind
    process: str  # the client ("w3", "r0") or, for probes, the member probed
    started: float
    finished: float
    outcome: Outcome
    value: int | None = None  # write: its id; read: the count it saw; probe: 1 if the member accepts writes
    node: str = ""  # the server that answered (address:port), when known
    group: int = 0  # probes: the member's Citus group
    pair: bool = False  # write: also wrote -value in the same transaction


@dataclass
class Verdict:
    acknowledged: int
    failed_writes: int
    lost: list[int]
    half_committed: list[int]
    indeterminate_committed: int  # failed writes whose rows are there after all (allowed)
    timelines: list[tuple[str, float, float]]  # (node, first ack, last ack) in order
    timeline_overlap: float  # seconds in which two nodes acknowledged writes
    split_brain_window: float  # seconds in which two members of one group both accepted writes (probes)
    stale_reads: list[str]
    unseen_acknowledged: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    def summary(self) -> dict[str, object]:
        return {
            "valid": self.valid,
            "acknowledged": self.acknowledged,
            "failed_writes": self.failed_writes,
            "lost": len(self.lost),
            "half_committed": len(self.half_committed),
            "indeterminate_committed": self.indeterminate_committed,
            "timelines": [[n, round(a, 3), round(b, 3)] for n, a, b in self.timelines],
            "timeline_overlap": round(self.timeline_overlap, 3),
            "split_brain_window": round(self.split_brain_window, 3),
            "stale_reads": len(self.stale_reads),
            "unseen_acknowledged": len(self.unseen_acknowledged),
            "problems": self.problems[:20],
        }


def check(history: Sequence[Op], final: Iterable[int]) -> Verdict:
    """Judge `history` against `final`, the ids present in the table after the drill."""
    present = set(final)
    writes = [op for op in history if op.kind == "write" and op.value is not None]
    acked = [op for op in writes if op.outcome == "ok"]
    failed = [op for op in writes if op.outcome != "ok"]
    lost = sorted(op.value for op in acked if op.value is not None and op.value not in present)
    half = sorted(op.value for op in writes
                  if op.value is not None and op.pair and (op.value in present) != (-op.value in present))
    timelines, overlap = ack_timelines(acked)
    window = probe_overlap([op for op in history if op.kind == "probe"])
    reads = [op for op in history if op.kind == "read" and op.outcome == "ok"]
    stale, unseen = stale_reads(reads), unseen_acknowledged(reads, acked)
    problems = [f"acknowledged write {v} lost" for v in lost]
    problems += [f"write {v} half-committed: only one of its rows is there" for v in half]
    seen: set[str] = set()
    for node, _, _ in timelines:
        if node in seen:
            problems.append(f"{node} acknowledged writes again after another server had taken over (two timelines)")
        seen.add(node)
    if overlap > 0:
        problems.append(f"two servers acknowledged writes within the same {overlap:.3f} s")
    if window > 0:
        problems.append(f"two members of one group accepted writes at once for {window:.3f} s (split brain)")
    problems += stale
    return Verdict(
        acknowledged=len(acked),
        failed_writes=len(failed),
        lost=lost,
        half_committed=half,
        indeterminate_committed=sum(1 for op in failed if op.value in present),
        timelines=timelines,
        timeline_overlap=overlap,
        split_brain_window=window,
        stale_reads=stale,
        unseen_acknowledged=unseen,
        problems=problems,
    )


def ack_timelines(acked: Sequence[Op]) -> tuple[list[tuple[str, float, float]], float]:
    """Runs of acknowledgements by the same server, in acknowledgement order, and how long runs overlap.

    A run spans from the earliest start to the latest end of its writes: each write took effect somewhere in
    its own interval, so two runs overlapping means the two servers may have accepted writes at once.
    """
    runs: list[_Run] = []
    for op in sorted(acked, key=lambda o: o.finished):
        if runs and runs[-1].node == op.node:
            runs[-1].last_ack = op.finished
            runs[-1].earliest_start = min(runs[-1].earliest_start, op.started)
        else:
            runs.append(_Run(op.node, op.finished, op.finished, op.started))
    overlap = sum(_overlap((a.earliest_start, a.last_ack), (b.earliest_start, b.last_ack))
                  for i, a in enumerate(runs) for b in runs[i + 1:] if a.node != b.node)
    timelines = [(r.node, r.first_ack, r.last_ack) for r in runs]
    return timelines, overlap


def probe_overlap(probes: Sequence[Op]) -> float:
    """Seconds in which two members of one group both answered 'I accept writes'.

    A member accepts writes from the start of the first to the end of the last probe of each unbroken run of
    'yes' answers (a generous span: the answer held somewhere inside each probe). A probe without an answer
    ends the run too: probes are sent from where the clients and HAProxy are, so a member they cannot reach
    accepts none of their writes.
    """
    spans: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for (group, member), ops in _by_member(probes).items():
        current: list[float] | None = None
        for op in ops:
            if op.outcome == "ok" and op.value == 1:
                current = [op.started, op.finished] if current is None else [current[0], op.finished]
            else:  # a definite 'no', or no answer
                if current is not None:
                    spans.setdefault((group, member), []).append((current[0], current[1]))
                current = None
        if current is not None:
            spans.setdefault((group, member), []).append((current[0], current[1]))
    total = 0.0
    keys = sorted(spans)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if a[0] == b[0]:
                total += sum(_overlap(x, y) for x in spans[a] for y in spans[b])
    return total


def stale_reads(reads: Sequence[Op]) -> list[str]:
    """Reads that saw less than a read that had finished before they began."""
    by_end = sorted(reads, key=lambda o: o.finished)
    ends = [op.finished for op in by_end]
    best: list[int] = []
    for op in by_end:
        best.append(max(best[-1] if best else 0, op.value or 0))
    problems = []
    for op in reads:
        before = bisect.bisect_left(ends, op.started)
        if before and (op.value or 0) < best[before - 1]:
            problems.append(f"read by {op.process} at {op.started:.3f} s saw {op.value} after a read had seen "
                            f"{best[before - 1]}")
    return problems


def unseen_acknowledged(reads: Sequence[Op], acked: Sequence[Op]) -> list[str]:
    """Reads that saw fewer rows than writes had been acknowledged before they began."""
    ack_ends = sorted(op.finished for op in acked)
    found = []
    for op in reads:
        acked_before = bisect.bisect_left(ack_ends, op.started)
        if (op.value or 0) < acked_before:
            found.append(f"read by {op.process} at {op.started:.3f} s saw {op.value} rows, but "
                         f"{acked_before} writes had been acknowledged before it began")
    return found


@dataclass
class _Run:
    node: str
    first_ack: float
    last_ack: float
    earliest_start: float


def _by_member(probes: Sequence[Op]) -> dict[tuple[int, str], list[Op]]:
    members: dict[tuple[int, str], list[Op]] = {}
    for op in sorted(probes, key=lambda o: o.started):
        members.setdefault((op.group, op.process), []).append(op)
    return members


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
