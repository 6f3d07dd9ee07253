"""The cluster's credentials, in one shape.

`Passwords` names every credential once. Its field names give the stack keys (`superuser` ->
`superuserPassword`), and the same class holds plain strings (renderers, the local harness) or Pulumi outputs
(the component), so no mapping between shapes is written by hand. `redact` keeps DSN passwords out of anything
printed or written to a report.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class Passwords(Generic[T]):
    """One value per credential. repr() never shows the values, so a Passwords object is safe to log."""

    superuser: T
    replication: T
    rest_api: T
    stats: T
    app: T
    monitoring: T  # the exporters' database role (cluster.roles.MONITORING_USER)
    pooler: T  # PgBouncer's auth_user (cluster.roles.POOLER_USER)

    def __repr__(self) -> str:
        return "Passwords(<redacted>)"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def stack_key(cls, name: str) -> str:
        """The stack config key of credential `name`: rest_api -> restApiPassword."""
        head, *rest = name.split("_")
        return head + "".join(part.title() for part in rest) + "Password"

    @classmethod
    def generate(cls) -> Passwords[str]:
        return cls(**{name: secrets.token_urlsafe(18) for name in cls.names()})  # type: ignore[arg-type]

    def items(self) -> Iterator[tuple[str, T]]:
        return ((name, getattr(self, name)) for name in self.names())

    def map(self, fn: Callable[[str, T], U]) -> Passwords[U]:
        return Passwords(**{name: fn(name, value) for name, value in self.items()})  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, T]:
        return dict(self.items())


MIN_PASSWORD_LENGTH = 16  # generated ones are 24 characters of token_urlsafe

PASSWORD_KEYS: tuple[str, ...] = tuple(Passwords.stack_key(name) for name in Passwords.names())
# A remote backup repository's access key pair (backups.repository.type s3): stack secrets like the passwords,
# refused in plain text by the same check, never generated (the bucket's owner issues them).
REPOSITORY_KEYS: tuple[str, ...] = ("backupS3Key", "backupS3KeySecret")
SECRET_KEYS: tuple[str, ...] = PASSWORD_KEYS + REPOSITORY_KEYS


def redact(text: str) -> str:
    """Hide the password of any URL in `text` (errors and command lines may quote a DSN)."""
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)
