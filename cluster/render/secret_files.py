"""The secret files of each database member, from the plan and the passwords: what the containers get as uploads
when they are created, what the harness writes, and what a rotation delivers into running members
(cluster.provision.delivery). One builder, so the three can never disagree."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cluster.plan import MONITORING_USER, SUPERUSER, Member, Plan
from cluster.provision.scram import pooled_verifier
from cluster.render.patroni import SECRETS_FILE, pgpass_path, pid_path, render_patroni_secrets
from cluster.render.pgbouncer import render_pgbouncer_auth
from cluster.secrets import Passwords


@dataclass(frozen=True)
class MemberSecrets:
    """One member's secret files (absolute paths where the member sees them) and what a rotation reads back."""

    member: str
    patroni_file: str
    patroni_text: str
    pgpass_file: str  # written by Patroni from the secrets file: a rotation waits until it holds the new password
    patroni_pid_file: str
    pooler_file: str = ""  # PgBouncer's auth file (coordinator members with pooling.enabled), else empty
    pooler_text: str = ""
    pooler_pid_file: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> MemberSecrets:
        return cls(**data)


def pooler_auth_text(passwords: Passwords[str]) -> str:
    """PgBouncer's auth file: the auth_user's own password and the superuser's and (when there is one) the
    monitoring role's verifiers, with the salts provisioning sets on the server (scram.pooled_verifier)."""
    p = passwords
    monitoring = pooled_verifier(p.monitoring, MONITORING_USER, p.pooler) if p.monitoring else None
    return render_pgbouncer_auth(p.pooler, pooled_verifier(p.superuser, SUPERUSER, p.pooler), monitoring)


def patroni_secrets_path(member: Member) -> str:
    return f"{member.config_dir}/{SECRETS_FILE}"


def member_secrets(plan: Plan, member: Member, passwords: Passwords[str]) -> MemberSecrets:
    pooler = member.pooler
    return MemberSecrets(
        member=member.name,
        patroni_file=patroni_secrets_path(member),
        patroni_text=render_patroni_secrets(passwords),
        pgpass_file=pgpass_path(member),
        patroni_pid_file=pid_path(member),
        pooler_file="" if pooler is None else pooler.auth_file,
        pooler_text="" if pooler is None else pooler_auth_text(passwords),
        pooler_pid_file="" if pooler is None else pooler.pid_file,
    )


def all_member_secrets(plan: Plan, passwords: Passwords[str]) -> list[MemberSecrets]:
    return [member_secrets(plan, m, passwords) for m in plan.members]
