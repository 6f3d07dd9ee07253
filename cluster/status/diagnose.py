"""From facts about a running cluster to findings in words. Pure: no I/O, so every rule is tested with
hand-made facts (tests/unit/test_status.py); `cluster.status.gather` fills the facts from the live cluster.

A finding is an `error` (something is broken now: a member down, a group without leader or standby, HAProxy or
pg_dist_node not following Patroni) or a `warning` (works, but needs a person: lag past what failover allows,
maintenance mode, unbalanced shards). `python -m cluster status` exits non-zero on any error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from cluster.provision.citus import NodeRow
from cluster.render.haproxy import LEADER_READS_BACKEND, LEADERS_BACKEND, PRIMARY_BACKEND, REPLICAS_BACKEND
from cluster.render.patroni import MAXIMUM_LAG_ON_FAILOVER

# Shards: how uneven is too uneven, the same for this screen and the alert rules (defined with those).
from cluster.render.prometheus import SHARD_BYTES_SKEW as SHARD_BYTES_SKEW
from cluster.render.prometheus import SHARD_COUNT_SKEW as SHARD_COUNT_SKEW

Severity = Literal["error", "warning"]

# Patroni's names for a member that holds its group's leader key (older releases: master).
LEADER_ROLES = frozenset({"leader", "primary", "master", "standby_leader"})
RUNNING_STATES = frozenset({"running", "streaming"})


@dataclass(frozen=True)
class MemberFacts:
    """What Patroni says of one planned member (its own /patroni and its group's /cluster)."""

    name: str
    group: int
    address: str  # host:port as Citus registers it
    reachable: bool  # its Patroni REST API answered
    state: str | None = None  # running, streaming, starting, stopped, crashed, ...
    role: str | None = None  # leader, sync_standby, quorum_standby, replica
    timeline: int | None = None
    lag: int | None = None  # bytes behind its leader (replicas; None when unknown)
    paused: bool = False  # Patroni maintenance mode
    pending_restart: bool = False
    error: str | None = None  # why it could not be read

    @property
    def leads(self) -> bool:
        return self.role in LEADER_ROLES

    @property
    def running(self) -> bool:
        return self.reachable and self.state in RUNNING_STATES


@dataclass(frozen=True)
class ServerFacts:
    """One server line of HAProxy's stats: which backend, which member, what HAProxy's checks say."""

    backend: str
    server: str
    status: str  # UP, DOWN, "UP 1/2" (going down), "DOWN 1/2" (coming up), MAINT, no check

    @property
    def up(self) -> bool:
        return self.status.startswith("UP")


@dataclass(frozen=True)
class ShardFacts:
    """Placements of distributed tables (reference tables excluded: every node holds the same) per group."""

    group: int
    shards: int
    bytes: int


@dataclass(frozen=True)
class Facts:
    members: tuple[MemberFacts, ...]
    haproxy: tuple[ServerFacts, ...] | None = None  # None: the stats could not be read (see haproxy_error)
    haproxy_error: str | None = None
    nodes: tuple[NodeRow, ...] | None = None  # pg_dist_node on the coordinator leader; None: unreadable
    citus_error: str | None = None
    shards: tuple[ShardFacts, ...] | None = None
    shards_error: str | None = None

    @property
    def groups(self) -> list[int]:
        return sorted({m.group for m in self.members})

    def members_of(self, group: int) -> list[MemberFacts]:
        return [m for m in self.members if m.group == group]

    def leaders(self, group: int) -> list[MemberFacts]:
        return [m for m in self.members_of(group) if m.reachable and m.leads]


@dataclass(frozen=True)
class Finding:
    severity: Severity
    subject: str  # a member, group, HAProxy backend or "shards"
    text: str


@dataclass(frozen=True)
class Skew:
    """How unevenly distributed shards sit on the groups that should hold them: (max - min) / mean."""

    shards: float
    bytes: float | None  # None: sizes not trusted (a group's primary is down, Citus reads its shards as 0 bytes)


@dataclass(frozen=True)
class Diagnosis:
    findings: tuple[Finding, ...]
    skew: Skew | None = None
    errors: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "errors", sum(f.severity == "error" for f in self.findings))

    @property
    def healthy(self) -> bool:
        return self.errors == 0


def diagnose(facts: Facts) -> Diagnosis:
    """Every rule over the facts; findings in a stable order: members and groups, HAProxy, Citus, shards."""
    findings = [
        *members_findings(facts),
        *haproxy_findings(facts),
        *citus_findings(facts),
    ]
    skew = shard_skew(facts.shards or ())
    if any(f.severity == "error" for f in findings):
        # Citus reads a shard's size from its group's primary; with one down or unregistered the size reads 0.
        skew = replace(skew, bytes=None) if skew else None
    findings += skew_findings(facts.shards, skew, facts.shards_error)
    return Diagnosis(tuple(findings), skew)


def _error(subject: str, text: str) -> Finding:
    return Finding("error", subject, text)


def _warning(subject: str, text: str) -> Finding:
    return Finding("warning", subject, text)


def _mib(value: int) -> str:
    return f"{value / 1024 / 1024:.1f} MiB"


# ---- members and groups -------------------------------------------------------------------------------------
def members_findings(facts: Facts) -> list[Finding]:
    found: list[Finding] = []
    for group in facts.groups:
        members = facts.members_of(group)
        for m in members:
            found += member_findings(m, facts.leaders(group))
        found += group_findings(group, members, facts.leaders(group))
    return found


def member_findings(m: MemberFacts, leaders: list[MemberFacts]) -> list[Finding]:
    if not m.reachable:
        return [_error(m.name, f"down: its Patroni REST API does not answer ({m.error or 'no answer'}); "
                               "the member is stopped, crashed or cut off the network")]
    if m.state not in RUNNING_STATES:
        return [_error(m.name, f"PostgreSQL is {m.state!r}, not running (Patroni is up; see its log)")]
    found = []
    if m.paused:
        found.append(_warning(m.name, "Patroni is in maintenance mode (paused): no automatic failover "
                                      "(`patronictl resume` ends it)"))
    if m.pending_restart:
        found.append(_warning(m.name, "a changed setting waits for a restart (pending_restart)"))
    if m.leads or len(leaders) != 1:
        return found
    leader = leaders[0]
    if m.lag is not None and m.lag > MAXIMUM_LAG_ON_FAILOVER:
        found.append(_warning(m.name, f"{_mib(m.lag)} behind {leader.name}, more than failover allows "
                                      f"({_mib(MAXIMUM_LAG_ON_FAILOVER)}): Patroni would not promote it"))
    if m.timeline is not None and leader.timeline is not None and m.timeline != leader.timeline:
        found.append(_warning(m.name, f"on timeline {m.timeline}, its leader {leader.name} on {leader.timeline}: "
                                      "it has not followed the last failover yet"))
    return found


def group_findings(group: int, members: list[MemberFacts], leaders: list[MemberFacts]) -> list[Finding]:
    subject = f"group {group}"
    if not leaders:
        return [_error(subject, "no leader: its writes fail until Patroni promotes a standby "
                                "(within the leader key's ttl)")]
    if len(leaders) > 1:
        return [_error(subject, f"{len(leaders)} members claim to lead ({', '.join(m.name for m in leaders)})")]
    standbys = [m for m in members if m not in leaders]
    streaming = [m for m in standbys if m.running]
    if standbys and not streaming:
        down = ", ".join(m.name for m in standbys)
        return [_error(subject, f"no standby running ({down} down): one more failure loses the group, and new "
                                "writes have no synchronous copy")]
    return []


# ---- HAProxy ------------------------------------------------------------------------------------------------
def expected_up(backend: str, member: MemberFacts, facts: Facts) -> bool | None:
    """Whether HAProxy's check of `member` in `backend` should pass by Patroni's account (None: unknown backend)."""
    leads = member.reachable and member.leads and facts.leaders(member.group) == [member]
    if backend in (PRIMARY_BACKEND, LEADERS_BACKEND, LEADER_READS_BACKEND):
        return leads
    if backend == REPLICAS_BACKEND:
        return member.running and not member.leads
    return None


def haproxy_findings(facts: Facts) -> list[Finding]:
    if facts.haproxy is None:
        return [_error("HAProxy", f"its stats cannot be read ({facts.haproxy_error}): HAProxy is down or the "
                                  "stats password is wrong; clients cannot reach the cluster if it is down")]
    members = {m.name: m for m in facts.members}
    found: list[Finding] = []
    for server in facts.haproxy:
        member = members.get(server.server)
        if member is None:
            found.append(_warning(f"HAProxy {server.backend}", f"serves {server.server}, which is not a member"))
            continue
        wanted = expected_up(server.backend, member, facts)
        if wanted is None or wanted == server.up:
            continue
        verdict = "sends traffic to" if server.up else "does not send traffic to"
        role = member.role if member.reachable else "down"
        found.append(_error(f"HAProxy {server.backend}", f"{verdict} {member.name} ({role} by Patroni): "
                                                          "its checks have not caught up, or it is misconfigured"))
    if PRIMARY_BACKEND in {s.backend for s in facts.haproxy} and not any(
        s.up for s in facts.haproxy if s.backend == PRIMARY_BACKEND
    ):
        found.append(_error(f"HAProxy {PRIMARY_BACKEND}", "no server up: the read-write endpoint refuses clients"))
    return found


# ---- pg_dist_node against Patroni ----------------------------------------------------------------------------
def citus_findings(facts: Facts) -> list[Finding]:
    if facts.nodes is None:
        return [_error("Citus", f"pg_dist_node cannot be read on the coordinator ({facts.citus_error})")]
    found: list[Finding] = []
    by_address = {m.address: m for m in facts.members}
    for group in facts.groups:
        found += node_findings(group, facts, [n for n in facts.nodes if n.group == group])
    for n in facts.nodes:
        if f"{n.host}:{n.port}" not in by_address:
            found.append(_warning(f"pg_dist_node {n.host}:{n.port}", f"registered as group {n.group} {n.role}, "
                                                                      "but no planned member has that address"))
    return found


def node_findings(group: int, facts: Facts, rows: list[NodeRow]) -> list[Finding]:
    subject = f"pg_dist_node group {group}"
    primaries = [r for r in rows if r.role == "primary"]
    if not primaries:
        return [_error(subject, "not registered: Citus sends this group nothing (`python -m cluster provision`)")]
    primary = primaries[0]
    registered = f"{primary.host}:{primary.port}"
    leaders = facts.leaders(group)
    found = []
    if len(leaders) == 1 and leaders[0].address != registered:
        found.append(_error(subject, f"primary is {registered} but Patroni's leader is {leaders[0].name} "
                                     f"({leaders[0].address}): Citus routes this group's queries to a member that "
                                     "does not lead (Patroni's coordinator updates it each heartbeat; if it stays, "
                                     "run `python -m cluster provision`)"))
    if not primary.active:
        found.append(_error(subject, f"primary {registered} is inactive: Citus skips it"))
    secondaries = {f"{r.host}:{r.port}" for r in rows if r.role == "secondary"}
    for m in facts.members_of(group):
        if m not in leaders and m.address not in secondaries and m.address != registered:
            found.append(_warning(subject, f"{m.name} is not registered as a secondary: reads on standbys "
                                           "(citus.use_secondary_nodes) cannot use it"))
    if group != 0:
        found += _secondary_reads(group, facts, secondaries, subject)
    return found


def _secondary_reads(group: int, facts: Facts, secondaries: set[str], subject: str) -> list[Finding]:
    """Sessions of the read-only endpoint read a worker group's shards on its first secondary row only (Citus
    never falls back to the primary): with none, or with one that is not a running standby, those reads fail."""
    if len(facts.members_of(group)) < 2:
        return []  # planned without a standby: the read-only endpoint is documented not to serve it
    by_address = {m.address: m for m in facts.members_of(group)}
    if not secondaries:
        return [_warning(subject, f"no secondary registered: reads through the read-only endpoint that touch group "
                                  f"{group} fail ('node group {group} does not have a secondary node') until a "
                                  "standby runs again")]
    found = []
    for address in sorted(secondaries):
        member = by_address.get(address)
        if member is not None and (not member.running or member.leads):
            found.append(_warning(subject, f"{member.name} is registered as a secondary but is not a running "
                                           "standby: reads through the read-only endpoint that reach it fail until "
                                           "Patroni updates the row or the member is back"))
    return found


# ---- shards ---------------------------------------------------------------------------------------------------
def shard_skew(shards: Iterable[ShardFacts]) -> Skew | None:
    rows = list(shards)
    if len(rows) < 2:
        return None
    return Skew(shards=_spread([r.shards for r in rows]), bytes=_spread([r.bytes for r in rows]))


def _spread(values: list[int]) -> float:
    mean = sum(values) / len(values)
    return (max(values) - min(values)) / mean if mean else 0.0


def skew_findings(shards: tuple[ShardFacts, ...] | None, skew: Skew | None, error: str | None) -> list[Finding]:
    if shards is None:
        return [_warning("shards", f"sizes cannot be read ({error})")]
    if skew is None:
        return []
    found = []
    if skew.shards > SHARD_COUNT_SKEW:
        counts = ", ".join(f"group {r.group}: {r.shards}" for r in shards)
        found.append(_warning("shards", f"unbalanced by count ({counts}; spread {skew.shards:.0%}): "
                                        "run `python -m cluster provision --rebalance`"))
    if skew.bytes is not None and skew.bytes > SHARD_BYTES_SKEW:
        sizes = ", ".join(f"group {r.group}: {_mib(r.bytes)}" for r in shards)
        found.append(_warning("shards", f"unbalanced by size ({sizes}; spread {skew.bytes:.0%}): hot cells or "
                                        "tenants; rebalance by disk size (rebalance_strategy 'by_disk_size')"))
    return found
