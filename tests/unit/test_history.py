"""The history checker on hand-made histories: clean ones pass, each kind of anomaly is caught and named."""

from __future__ import annotations

from benchmarks.history import Op, check


def write(value: int, start: float, end: float, node: str = "A", ok: bool = True, pair: bool = False) -> Op:
    return Op("write", f"w{value % 3}", start, end, "ok" if ok else "fail", value, node, pair=pair)


def read(count: int, start: float, end: float, ok: bool = True) -> Op:
    return Op("read", "r0", start, end, "ok" if ok else "fail", count, "A")


def probe(member: str, start: float, accepts: bool | None, group: int = 0) -> Op:
    """accepts=None: the probe got no answer."""
    outcome = "fail" if accepts is None else "ok"
    return Op("probe", member, start, start + 0.05, outcome, None if accepts is None else int(accepts), group=group)


def failover_history() -> list[Op]:
    """A leads, is cut off, some writes fail, B takes over; A answers 'no' before B answers 'yes'."""
    ops = [write(i, i * 0.1, i * 0.1 + 0.05, "A") for i in range(1, 11)]
    ops += [write(11, 1.1, 3.0, "A", ok=False), write(12, 3.1, 3.2, "B", ok=False)]
    ops += [write(i, i * 0.1 + 2.0, i * 0.1 + 2.05, "B") for i in range(13, 20)]
    ops += [read(0, 0.0, 0.05), read(5, 0.6, 0.65), read(10, 1.2, 1.25), read(12, 3.5, 3.55), read(18, 4.0, 4.1)]
    ops += [probe("A", t / 10, True) for t in range(0, 15)] + [probe("A", t / 10, False) for t in range(15, 40)]
    ops += [probe("B", t / 10, False) for t in range(0, 25)] + [probe("B", t / 10, True) for t in range(25, 40)]
    return ops


def test_a_clean_failover_passes_and_reports_its_timelines() -> None:
    present = set(range(1, 11)) | {11} | set(range(13, 20))  # write 11 failed but committed: allowed
    verdict = check(failover_history(), present)
    assert verdict.valid, verdict.problems
    assert verdict.acknowledged == 17 and verdict.failed_writes == 2
    assert verdict.indeterminate_committed == 1
    assert [node for node, _, _ in verdict.timelines] == ["A", "B"]
    assert verdict.split_brain_window == 0.0 and verdict.timeline_overlap == 0.0


def test_an_acknowledged_write_missing_afterwards_is_lost() -> None:
    present = set(range(1, 10)) | set(range(13, 20))  # 10 was acknowledged by A, then rewound away
    verdict = check(failover_history(), present)
    assert not verdict.valid
    assert verdict.lost == [10]
    assert "acknowledged write 10 lost" in verdict.problems


def test_two_leaders_acknowledging_at_once_is_two_timelines() -> None:
    ops = [write(1, 0.0, 0.1, "A"), write(2, 0.2, 0.3, "B"), write(3, 0.25, 0.4, "A"), write(4, 0.5, 0.6, "B")]
    verdict = check(ops, {1, 2, 3, 4})
    assert not verdict.valid
    assert any("A acknowledged writes again" in p for p in verdict.problems)
    assert verdict.timeline_overlap > 0


def test_probes_that_say_yes_on_two_members_at_once_measure_the_split_brain_window() -> None:
    ops = [probe("A", t / 10, True) for t in range(0, 30)]  # A never steps down
    ops += [probe("B", t / 10, False) for t in range(0, 20)] + [probe("B", t / 10, True) for t in range(20, 30)]
    verdict = check(ops, set())
    assert 0.9 < verdict.split_brain_window < 1.1
    assert any("split brain" in p for p in verdict.problems)


def test_a_member_nobody_reaches_accepts_nothing_and_other_groups_do_not_count() -> None:
    ops = [probe("A", 0.0, True), probe("A", 1.0, None), probe("A", 2.0, True), probe("A", 3.0, False)]
    ops += [probe("B", 1.5, True), probe("B", 1.97, True)]  # B says yes while A is silent, then both do
    ops += [probe("W", t / 10, True, group=1) for t in range(0, 30)]  # another group's leader: no conflict
    verdict = check(ops, set())
    assert 0.01 < verdict.split_brain_window < 0.03  # only where B's last yes and A's next yes overlap
    assert check([op for op in ops if op.process != "B" or op.started < 1.9], set()).split_brain_window == 0.0


def test_a_read_that_goes_back_in_time_is_caught() -> None:
    ops = [write(1, 0.0, 0.1), write(2, 0.2, 0.3), read(2, 0.4, 0.5), read(1, 0.6, 0.7)]
    verdict = check(ops, {1, 2})
    assert verdict.lost == [] and not verdict.valid
    assert len(verdict.stale_reads) == 1 and "saw 1 after a read had seen 2" in verdict.stale_reads[0]
    assert len(verdict.unseen_acknowledged) == 1  # also below the writes acknowledged before it began


def test_concurrent_reads_may_disagree_and_a_late_visible_write_is_counted_not_failed() -> None:
    concurrent = [write(1, 0.0, 0.1), read(1, 0.2, 0.6), read(0, 0.05, 0.5)]  # second began before the ack
    verdict = check(concurrent, {1})
    assert verdict.valid and verdict.unseen_acknowledged == []
    late = check([write(1, 0.0, 0.1), read(0, 0.2, 0.3)], {1})  # visible only after 2PC recovery, then there
    assert late.valid and len(late.unseen_acknowledged) == 1
    assert not check([write(1, 0.0, 0.1), read(0, 0.2, 0.3)], set()).valid  # ...and never there: lost


def test_a_multi_shard_write_must_be_there_whole_or_not_at_all() -> None:
    ops = [write(1, 0.0, 0.1, pair=True), write(2, 0.2, 0.3, ok=False, pair=True), write(3, 0.4, 0.5, ok=False,
                                                                                         pair=True)]
    assert check(ops, {1, -1, 2, -2}).valid  # 3 failed and left nothing: fine
    verdict = check(ops, {1, -1, 3})
    assert verdict.half_committed == [3]
    assert any("half-committed" in p for p in verdict.problems)
