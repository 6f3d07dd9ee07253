"""Run Patroni's own config validator over a rendered config directory, in-process.

Patroni's validator mixes checks of the config (schema, types, addresses, enums) with checks of the machine
it runs on (peer names resolve, etcd answers, binaries exist). Here only the first kind can be answered for
the Docker layout: container names resolve only on the Docker network and the image's PostgreSQL is not
installed here. So exactly those two machine checks are narrowed, explicitly, and everything else is
Patroni's validator unchanged.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection
from pathlib import Path
from unittest import mock

from patroni import validator
from patroni.config import Config, ConfigParseError


class _ClusterSocketModule:
    """The validator's view of `socket`: cluster names resolve and answer; anything else is real."""

    def __init__(self, cluster_hosts: frozenset[str]) -> None:
        self._hosts = cluster_hosts

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(socket, name)

    def getaddrinfo(self, host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host in self._hosts:
            return [(socket.AF_INET, socket.SOCK_STREAM, 0, "", (host, 0))]
        return socket.getaddrinfo(host, *args, **kwargs)

    def socket(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return _ClusterSocket(self._hosts, socket.socket(*args, **kwargs))


class _ClusterSocket:
    def __init__(self, hosts: frozenset[str], real: socket.socket) -> None:
        self._hosts, self._real = hosts, real

    def connect_ex(self, address):  # type: ignore[no-untyped-def]
        return 0 if address[0] in self._hosts else self._real.connect_ex(address)

    def close(self) -> None:
        self._real.close()


def validate_patroni_dir(
    config_dir: Path, cluster_hosts: Collection[str], image_bin_dir: str | None = None
) -> list[str]:
    """Return Patroni's validation errors for `config_dir` (empty list = valid).

    `cluster_hosts` are names that exist only on the cluster network: addresses that use them are checked for
    form (host:port, a known name) instead of being resolved and dialled. `image_bin_dir` is a bin_dir that
    exists only inside the image: it must have the image's layout instead of existing here.
    """
    cluster_socket = _ClusterSocketModule(frozenset(cluster_hosts))

    real_bin_validate = validator.BinDirectory.validate

    def bin_validate(self: validator.BinDirectory, name: str):  # type: ignore[no-untyped-def]
        if image_bin_dir is not None and name == image_bin_dir and not os.path.isdir(name):
            if not name.startswith("/usr/lib/postgresql/") or not name.endswith("/bin"):
                yield validator.Result(False, f"{name} is not the image's PostgreSQL bin layout")
            return
        yield from real_bin_validate(self, name)

    validator.populate_validate_params(ignore_listen_port=True)
    with (
        mock.patch.object(validator, "socket", cluster_socket),
        mock.patch.object(validator.BinDirectory, "validate", bin_validate),
    ):
        try:
            Config(str(config_dir), validator=validator.schema)
        except ConfigParseError as exc:
            return [line for line in str(exc.value).splitlines() if line.strip()]
    return []
