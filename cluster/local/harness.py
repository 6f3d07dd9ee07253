"""The cluster the containers would run, as real processes on 127.0.0.1: etcd, Patroni + PostgreSQL, HAProxy, and
a prometheus-postgres-exporter per member (on the member's host, as the server user; `down` stops it with the rest);
PgBouncer on every coordinator member, with its prometheus-pgbouncer-exporter (started and stopped with it).

Every file comes from the product's renderers (`render_files`, `render_patroni_secrets`, `etcd_command`) over a
plan built with a LocalLayout; the harness only writes them into a directory and starts the programs. Two
departures, both forced by this machine rather than chosen: servers run as `postgres` (PostgreSQL refuses
root), and without the citus extension Patroni runs without its `citus:` section, each group as its own
Patroni cluster, so the non-Citus tests still run on the same files.

With `namespaces=True` the plan is built with a NamespaceLayout: every member and etcd member runs in a network
namespace of its own with its own address on a bridge (cluster/local/network.py), so drills can cut the network
between hosts; HAProxy and the clients stay in the root namespace on 127.0.0.1.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import psycopg
import yaml

from cluster.config import ClusterConfig, load_config
from cluster.config.sources import read_stack_file, stack_file
from cluster.local import cpuhosts, network, processes
from cluster.local.certs import plaintext_dsn, pooler_without_tls, without_tls, write_certificates
from cluster.local.processes import HarnessError, Proc
from cluster.local.state import STATE_FILE, read_state, write_state
from cluster.plan import (
    RESTAPI_USER,
    SUPERUSER,
    Host,
    HostNetwork,
    LocalLayout,
    Member,
    NamespaceLayout,
    Plan,
    PortBook,
    build_plan,
)
from cluster.provision import ProvisionResult, delivery, provision
from cluster.provision.migrations import Migration
from cluster.provision.rest import post_json, rest_json, rest_send
from cluster.provision.rest import role as member_role
from cluster.provision.roles import ensure_pooler_auth
from cluster.provision.target import ClusterTarget, target_from_plan
from cluster.render import (
    etcd_command,
    exporter,
    pgbackrest,
    pgbouncer_exporter,
    render_files,
)
from cluster.render.haproxy import haproxy_command, render_haproxy_secrets
from cluster.render.patroni import CONFIG_FILE, DCS_NAMESPACE, dcs_prefix, deep_merge, pid_path, render_patroni_with
from cluster.render.patroni import config_path as patroni_config_path
from cluster.render.secret_files import all_member_secrets
from cluster.secrets import Passwords
from cluster.tls import TlsPaths

STARTUP_TIMEOUT = 180.0

# A laptop-sized default: one etcd, a coordinator pair and two worker pairs; the dev stack's citus section
# (shard count, distribution), so tests see the schema `make up` builds.
DEFAULT_CONFIG: dict[str, Any] = {
    "name": "h",
    "etcd": {"members": 1},
    "coordinator": {"members": 2},
    "workers": {"groups": 2, "members": 2},
    "citus": read_stack_file(stack_file("dev"))[0].get("citus", {}),
    "ports": {"anyNode": 5434},  # turns the any-node listener on; the harness gives it a free port
    "postgresql": {"parameters": {"shared_buffers": "64MB", "fsync": "off", "max_connections": 100}},
}


def local_postgres() -> tuple[int, str]:
    """The newest PostgreSQL installed from Debian's packages: (major, bin dir)."""
    found = sorted(
        (int(p.parent.name), str(p)) for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").exists()
    )
    if not found:
        raise HarnessError("no PostgreSQL server under /usr/lib/postgresql; install postgresql-15 (see .ci/run)")
    return found[-1]


def citus_missing(major: int) -> str | None:
    """Why Citus tests cannot run here, or None when the extension is installed."""
    control = Path(f"/usr/share/postgresql/{major}/extension/citus.control")
    if control.exists():
        return None
    return f"the citus extension is not installed for PostgreSQL {major} ({control} missing; see ../shared/citus)"


def installed_citus_line(major: int) -> str:
    """'13.2' from the control file's default_version '13.2-1' (the patch level shows in citus_version())."""
    text = Path(f"/usr/share/postgresql/{major}/extension/citus.control").read_text()
    version = next(line.split("=")[1].strip(" '\"") for line in text.splitlines() if "default_version" in line)
    return version.split("-")[0]


def harness_config(overrides: dict[str, Any] | None = None, cpu_per_host: float | None = None) -> ClusterConfig:
    """DEFAULT_CONFIG with `overrides` merged in, pinned to the local PostgreSQL (and Citus) versions.

    With `cpu_per_host` every database member runs on a host of that many cores (cluster/local/cpuhosts.py), so
    the config says so too: resources.database.cpus, which the derived settings (cluster/tuning.py) follow."""
    raw = deep_merge(DEFAULT_CONFIG, overrides or {})
    if cpu_per_host is not None:
        database = raw.setdefault("resources", {}).setdefault("database", {})
        if database.get("cpus") not in (None, cpu_per_host):
            raise cpuhosts.CpuHostError(
                f"the config sets resources.database.cpus: {database['cpus']} but {cpuhosts.OPTION} is "
                f"{cpu_per_host}: drop one, or make them equal (the host size is what the members' settings follow)")
        database["cpus"] = cpu_per_host
        database.setdefault("memoryMb", 768)
    major, _ = local_postgres()
    versions = raw.setdefault("versions", {})
    versions["postgres"] = major
    if citus_missing(major) is None:
        versions["citus"] = f"{installed_citus_line(major)}.0"  # the line decides compatibility
    return load_config(raw).config


def free_ports(count: int) -> list[int]:
    """`count` distinct ports nobody listens on right now (the kernel picks them)."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


class Harness:
    """One cluster under `base_dir`; its state file lets another process (the CLI's `down`) take it over."""

    def __init__(
        self,
        base_dir: Path,
        config: ClusterConfig,
        passwords: Passwords[str],
        ports: dict[str, int],
        citus: bool = True,
        hosts: dict[str, Any] | None = None,
        tls: bool = True,
        cpu: dict[str, Any] | None = None,
    ) -> None:
        self.base_dir = base_dir
        # Hosts of a fixed size: {"cpus", "tag"} (cluster/local/cpuhosts.py), kept in the state file; None = the
        # members share the machine's CPUs unbounded.
        self.cpu = cpu
        self.tls = tls  # False: a measurement switch only (the price of TLS); every real cluster has it on
        self.config = config
        self.passwords = passwords
        self.book = PortBook(ports, free=())
        # Namespaced layout: {"subnet", "tag", "assigned"} (the host-number book), kept in the state file.
        self.hosts = hosts
        self.host_book = PortBook(hosts["assigned"], free=range(2, 255)) if hosts else None
        self.procs: dict[str, Proc] = {}
        # Extra Patroni settings by member name, merged over the rendered file (a restore's bootstrap section).
        self.patroni_overrides: dict[str, dict[str, Any]] = {}
        major, self.bin_dir = local_postgres()
        self.citus_reason = citus_missing(major) if citus else "Citus mode turned off for this harness"
        self.plan = self._plan()

    # ---- construction -------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        config: ClusterConfig | None = None,
        base_dir: Path | None = None,
        citus: bool = True,
        namespaces: bool = False,
        tls: bool = True,
        cpu_per_host: float | None = None,
    ) -> Harness:
        """A harness not started yet (call up()); `citus=False` runs plain Patroni even where Citus exists;
        `namespaces=True` puts every member on a host of its own (needs root, iproute2 and nftables);
        `tls=False` lets every client and replication/Citus link go without TLS (to measure what TLS costs);
        `cpu_per_host` holds every database member (with its PgBouncer and exporter) to that many cores, a host
        of that size each (needs the cgroup v1 cpu controller, writable: root)."""
        config = config or harness_config(cpu_per_host=cpu_per_host)
        cpu = None
        if cpu_per_host is not None:
            cpuhosts.check_size(cpu_per_host, os.cpu_count() or 1)
            cpuhosts.require_controller()
            cpu = {"cpus": cpu_per_host, "tag": secrets.token_hex(3)}
        hosts = None
        if namespaces:
            network.require_tools()
            hosts = {"subnet": network.pick_subnet(), "tag": secrets.token_hex(2), "assigned": {}}
        base_dir = Path(base_dir or tempfile.mkdtemp(prefix="citus-harness-"))
        base_dir.mkdir(parents=True, exist_ok=True)
        processes.check_reachable(str(base_dir.parent), "choose a --dir whose parents every user can traverse")
        os.chmod(base_dir, 0o700)
        return cls(base_dir, config, Passwords.generate(), ports={}, citus=citus, hosts=hosts, tls=tls, cpu=cpu)

    @classmethod
    def load(cls, base_dir: Path) -> Harness:
        state = read_state(base_dir)
        config = load_config(state["config"]).config
        # A directory from before a credential existed gets one made up (its role does not exist: that process
        # fails to log in, nothing else does).
        passwords = Passwords(**{**Passwords.generate().as_dict(), **state["passwords"]})
        harness = cls(Path(base_dir), config, passwords, state["ports"], state["citus"],
                      state.get("hosts"), state.get("tls", True), state.get("cpu"))
        harness.procs = {name: Proc(**p) for name, p in state["processes"].items()}
        return harness

    def _plan(self) -> Plan:
        self.book.offer(free_ports(64))  # more than any growth step needs; unused ones are never bound
        if self.hosts is None or self.host_book is None:
            return build_plan(self.config, LocalLayout(str(self.base_dir), self.book, self.bin_dir))
        layout = NamespaceLayout(str(self.base_dir), self.book, self.bin_dir, subnet=self.hosts["subnet"],
                                 tag=self.hosts["tag"], hosts=self.host_book)
        return build_plan(self.config, layout)

    @property
    def citus(self) -> bool:
        return self.citus_reason is None

    @property
    def cpu_hosts(self) -> tuple[cpuhosts.CpuHost, ...]:
        """The hosts of a fixed size the plan's members run on (none without cpu_per_host)."""
        if self.cpu is None:
            return ()
        return cpuhosts.plan_hosts([m.name for m in self.plan.members], self.cpu["cpus"], self.cpu["tag"])

    @property
    def host_network(self) -> HostNetwork | None:
        return self.plan.host_network

    def host(self, name: str) -> Host:
        """The host (namespace, address) a member or etcd member runs on; namespaced harness only."""
        if self.plan.host_network is None:
            raise HarnessError("this harness runs everything on 127.0.0.1: create it with namespaces=True")
        return self.plan.host_network.host(name)

    # ---- outputs ------------------------------------------------------------------------------------------
    @property
    def target(self) -> ClusterTarget:
        p = self.passwords
        target = target_from_plan(self.plan, p.superuser, p.app, p.replication, p.rest_api,
                                  monitoring_password=p.monitoring, pooler_password=p.pooler)
        if self.tls:
            return target
        members = tuple(replace(m, dsn=plaintext_dsn(m.dsn)) for m in target.members)
        return replace(target, rw_dsn=plaintext_dsn(target.rw_dsn), ro_dsn=plaintext_dsn(target.ro_dsn),
                       members=members)

    def dsn(self, role: str = "read-write", database: str | None = None) -> str:
        dsn = self.plan.dsn(role, self.passwords.superuser, database=database)  # type: ignore[arg-type]
        return dsn if self.tls else plaintext_dsn(dsn)

    def member(self, name: str) -> Member:
        return next(m for m in self.plan.members if m.name == name)

    def member_dsn(self, name: str) -> str:
        return next(t.dsn for t in self.target.members if t.name == name)

    def patroni_url(self, name: str) -> str:
        member = self.member(name)
        return f"https://{member.published_host}:{member.published_api}"

    @property
    def ca_file(self) -> str:
        """The cluster CA every client of this harness verifies against (DSNs, Patroni, etcd)."""
        return self.plan.client_ca_file

    def rest(self, url: str, timeout: float = 2.0) -> dict[str, Any]:
        """GET a Patroni endpoint over verified HTTPS."""
        return rest_json(url, timeout, self.ca_file)

    def info(self) -> dict[str, Any]:
        return {
            "dir": str(self.base_dir),
            "citus": self.citus,
            "tls": self.tls,
            "citus_missing": self.citus_reason,
            "rw_dsn": self.dsn("read-write"),
            "ro_dsn": self.dsn("read-only"),
            "stats_url": self.plan.stats_url,
            "ca_file": self.ca_file,
            "patroni": {m.name: self.patroni_url(m.name) for m in self.plan.members},
            "exporters": {m.name: self.exporter_url(m.name) for m in self.plan.members},
            "pgbouncer_exporters": {m.name: self.pgbouncer_exporter_url(m.name) for m in self.plan.coordinators
                                    if m.pooler is not None},
            "pids": {name: p.pid for name, p in self.procs.items()},
            "cpu_per_host": None if self.cpu is None else self.cpu["cpus"],
            "cpu_groups": {h.member: h.group for h in self.cpu_hosts},
        }

    def _adopt_recorded(self) -> None:
        """Take over live processes that another Harness object on this directory started and recorded."""
        if not (self.base_dir / STATE_FILE).exists():
            return
        for name, proc in read_state(self.base_dir)["processes"].items():
            recorded = Proc(**proc)
            if recorded.alive() and (name not in self.procs or not self.procs[name].alive()):
                self.procs[name] = recorded

    def save(self) -> None:
        self._adopt_recorded()
        state = {
            "config": self.config.model_dump(mode="json", by_alias=True),
            "ports": self.book.assigned,
            "passwords": self.passwords.as_dict(),
            "hosts": None if self.hosts is None or self.host_book is None else {
                **self.hosts, "assigned": self.host_book.assigned},
            "processes": {name: asdict(p) for name, p in self.procs.items()},
            "cpu": self.cpu,
            "target": self.target.to_dict(),
            **self.info(),
        }
        write_state(self.base_dir, state)

    # ---- files --------------------------------------------------------------------------------------------
    def write_files(self) -> None:
        """The rendered files, where the plan says each process finds them."""
        files = render_files(self.plan)
        (self.base_dir / "logs").mkdir(exist_ok=True)
        write_certificates(self.plan)
        for member in self.plan.members:
            config_dir = Path(member.config_dir)
            config_dir.mkdir(parents=True, exist_ok=True)
            text = files[f"patroni/{member.name}/{CONFIG_FILE}"]
            if member.name in self.patroni_overrides:
                text = render_patroni_with(self.plan, member, self.patroni_overrides[member.name])
            Path(patroni_config_path(member)).write_text(self._adapt_patroni(text, member))
            exporter_dir = Path(exporter.exporter_dir(self.plan, member))
            exporter_dir.mkdir(parents=True, exist_ok=True)
            for name, text in exporter.render_exporter_files(self.plan, member).items():
                (exporter_dir / name).write_text(text)
            backup_config = f"patroni/{member.name}/{pgbackrest.CONFIG_NAME}"
            if backup_config in files:
                Path(pgbackrest.config_path(member)).write_text(files[backup_config])
            if member.pooler is not None:
                Path(member.pooler.config_dir).mkdir(parents=True, exist_ok=True)
                text = files[f"pgbouncer/{member.name}/pgbouncer.ini"]
                Path(member.pooler.config_path).write_text(text if self.tls else pooler_without_tls(text))
                directory = Path(pgbouncer_exporter.pgbouncer_exporter_dir(self.plan, member))
                directory.mkdir(parents=True, exist_ok=True)
                for name, text in pgbouncer_exporter.render_pgbouncer_exporter_files(self.plan, member).items():
                    (directory / name).write_text(text)
        self._write_secrets()
        Path(self.plan.balancer.config_path).write_text(files["haproxy.cfg"])
        Path(self.plan.balancer.launcher_path).write_text(files["haproxy-launcher.sh"])
        for e in self.plan.etcd:
            Path(e.data_dir).parent.mkdir(parents=True, exist_ok=True)
        for directory in pgbackrest.local_dirs(self.plan):
            Path(directory).mkdir(parents=True, exist_ok=True)  # the repository: a directory owned by postgres
        processes.give_to_server_user(self.base_dir)

    def _write_secrets(self) -> None:
        """Every member's secret files (cluster.render.secret_files: Patroni's, PgBouncer's auth file), created
        0600 (never readable by others, not even for a moment) and owned by the server user, as the containers get
        them; then the harness's own."""
        for s in all_member_secrets(self.plan, self.passwords):
            _write_private(Path(s.patroni_file), s.patroni_text)
            if s.pooler_file:
                _write_private(Path(s.pooler_file), s.pooler_text)
        self._write_side_secrets()

    def _write_side_secrets(self) -> None:
        """The files only the harness writes, also after a rotation: the exporters' and HAProxy's."""
        for member in self.plan.members:
            _write_private(Path(exporter.exporter_dir(self.plan, member)) / exporter.PASSWORD_FILE,
                           self.passwords.monitoring)
            if member.pooler is not None:  # read by libpq at every login: a rotation needs no restart
                _write_private(Path(pgbouncer_exporter.pgbouncer_exporter_dir(self.plan, member))
                               / pgbouncer_exporter.PGPASS_FILE, pgbouncer_exporter.render_pgpass(
                                   self.passwords.monitoring))
        Path(self.plan.balancer.secrets_dir).mkdir(parents=True, exist_ok=True)
        _write_private(Path(self.plan.balancer.secrets_path), render_haproxy_secrets(self.passwords.stats))

    def rotate_passwords(self, new: Passwords[str], files: list[Migration]) -> ProvisionResult:
        """Change credentials on the running cluster as `make up` does after the config changed, with no restart:
        cluster.provision.delivery.rotate, the very code the Docker stack's provisioning runs (the new member
        files written through PostgreSQL, PgBouncer and Patroni reloaded, the roles set in between, logging in
        with the old superuser password, sending SCRAM verifiers). It returns once every replica's pgpass holds
        the new replication password, so a reconnect right after the rotation cannot still find the old one.

        What only the harness has on the side: the exporters' password files (an exporter reads its file once,
        at start: restarted) and HAProxy's stats file (its launcher reloads HAProxy: no session through it is
        cut; the Docker stack's one-shot courier container writes that file the same way)."""
        old, self.passwords = self.passwords, new
        target = replace(self.target, rest_password=old.rest_api)
        result = delivery.rotate(self.target, all_member_secrets(self.plan, new), [old.superuser],
                                 lambda: provision(target, files, previous_superuser_passwords=[old.superuser]))
        self._write_side_secrets()  # HAProxy's launcher sees its new secrets file and reloads it
        if new.stats != old.stats:
            self.wait_stats_password(old.stats)
        if new.monitoring != old.monitoring:  # the exporter reads its password file once, at start
            names = [self.exporter_name(m.name) for m in self.plan.members]
            self._stop_procs(names)
            for name in names:
                self.restart_process(name)
        self.save()
        return result

    def _adapt_patroni(self, text: str, member: Member) -> str:
        """Without Citus: drop Patroni's `citus:` section and give each group its own Patroni cluster.
        Without TLS (measurement switch): see certs.without_tls."""
        if self.citus and self.tls:
            return text
        doc = yaml.safe_load(text)
        header = f"# {member.name}: rendered file"
        if not self.citus:
            doc.pop("citus", None)
            doc["scope"] = f"{doc['scope']}-group{member.group}"
            header += " minus `citus:` (harness without the citus extension)"
        if not self.tls:
            without_tls(doc)
            header += " with TLS optional (measurement switch `--no-tls`)"
        return header + "\n" + yaml.safe_dump(doc, sort_keys=False)

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def up(self, timeout: float = STARTUP_TIMEOUT) -> Harness:
        """Start everything and wait until it serves; on any failure stop what was started and raise."""
        try:
            self.write_files()
            self.save()  # before any namespace exists, so `down`/`cleanup` can find and remove them
            if self.plan.host_network is not None:
                network.create(self.plan.host_network)
            cpuhosts.create(self.cpu_hosts)
            self._start_etcd(timeout)
            self._start_members([m for m in self.plan.members], timeout)
            self._start_poolers(timeout)
            self._start_haproxy(timeout)
            self._start_exporters(list(self.plan.members))
        except BaseException:
            self.down(remove=False)
            raise
        return self

    def down(self, remove: bool = True) -> None:
        """Stop every process this harness started (members first, etcd last), then delete the directory.

        Processes another Harness object started on this directory (a benchmark run restarting HAProxy, say)
        are in the state file; they are stopped too.
        """
        self._adopt_recorded()
        etcd = {e.name for e in self.plan.etcd}
        try:
            self._stop_procs([name for name in self.procs if name not in etcd])
            self._stop_procs([name for name in self.procs if name in etcd])
        finally:
            if self.plan.host_network is not None:
                network.destroy(self.plan.host_network)
            left = cpuhosts.remove(self.cpu_hosts)
        if left:
            raise HarnessError(f"cpu groups {left} under {cpuhosts.CPU_ROOT} still hold processes after down "
                               f"(pids {[p for g in left for p in cpuhosts.pids_in(g)]}); stop them, then rmdir")
        if remove:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        else:
            self.save()

    @classmethod
    def cleanup(cls, base_dir: Path) -> bool:
        """Stop whatever the state file in `base_dir` records and remove its namespaces; keep the directory.

        Idempotent: safe after a crashed test, a failed `up` or a previous cleanup. False if there was no state.
        """
        if not (Path(base_dir) / STATE_FILE).exists():
            return False
        cls.load(base_dir).down(remove=False)
        return True

    def _start_etcd(self, timeout: float) -> None:
        binary = processes.require_binary("etcd", "install etcd-server (see .ci/run)")
        for e in self.plan.etcd:
            self._spawn(self._proc(e.name, etcd_command(self.plan, e, binary)))
        for e in self.plan.etcd:
            tls = TlsPaths(e.tls_dir)  # etcd admits certified clients only: the harness uses the member's own
            url = f"https://{e.client.address}/health"
            self._wait(e.name, lambda url=url, tls=tls: rest_json(url, 2.0, tls.ca, (tls.cert, tls.key))
                       .get("health") == "true", timeout, "etcd /health to answer true")

    def exporter_name(self, member: str) -> str:
        return f"{member}-exporter"

    def exporter_url(self, member: str) -> str:
        return f"https://{self.member(member).exporter.address}/metrics"

    def _start_exporters(self, members: list[Member]) -> None:
        """A prometheus-postgres-exporter per member, on the member's host, from the rendered files. It logs in
        per scrape, so it may start before provisioning creates its role (its pg_up is 0 until then)."""
        binary = processes.require_binary(exporter.BINARY, "install prometheus-postgres-exporter (see .ci/run)")
        for m in members:
            proc = self._proc(m.name, exporter.exporter_command(self.plan, m, binary))
            self._spawn(replace(proc, name=self.exporter_name(m.name), log=self._log(self.exporter_name(m.name))),
                        env=self._env(self.exporter_name(m.name)))

    def _env(self, name: str) -> dict[str, str] | None:
        """The environment process `name` starts with (no secret in it: the exporter reads a password file)."""
        member = next((m for m in self.plan.members if self.exporter_name(m.name) == name), None)
        if member is not None:
            return exporter.exporter_env(self.plan, member)
        pooled = next((m for m in self.plan.coordinators if pgbouncer_exporter_name(m) == name), None)
        return None if pooled is None else pgbouncer_exporter.pgbouncer_exporter_env(self.plan, pooled)

    def pgbouncer_exporter_url(self, member: str) -> str:
        pooler = self.member(member).pooler
        if pooler is None:
            raise HarnessError(f"{member} runs no PgBouncer (coordinator members with pooling.enabled only)")
        return f"https://{pooler.exporter.address}/metrics"

    def _spawn_pgbouncer_exporter(self, member: Member) -> None:
        """The member's prometheus-pgbouncer-exporter, on its host (namespace), from the rendered files."""
        processes.require_binary(pgbouncer_exporter.PACKAGE, "install prometheus-pgbouncer-exporter (see .ci/run)")
        name = pgbouncer_exporter_name(member)
        proc = self._proc(member.name, pgbouncer_exporter.pgbouncer_exporter_command(self.plan, member))
        self._spawn(replace(proc, name=name, log=self._log(name)), env=self._env(name))

    def _start_members(self, members: list[Member], timeout: float) -> None:
        """Intended leaders first, so each group bootstraps where the plan says; then the replicas."""
        patroni = str(Path(sys.executable).parent / "patroni")
        processes.check_reachable(
            patroni, "create the venv with /usr/bin/python3 in a directory every user can traverse (repo or /opt)"
        )
        leaders = [m for m in members if m.index == 0]
        for batch, role in ((leaders, "primary"), ([m for m in members if m.index > 0], "replica")):
            for m in batch:
                self._spawn(self._proc(m.name, [patroni, m.config_dir]))
            for m in batch:
                self.wait_member(m.name, role, timeout)
            if role == "primary" and not self.citus:
                self._create_database(batch)
            if role == "primary":
                self._create_stanzas(batch)

    def _create_database(self, leaders: list[Member]) -> None:
        """Patroni's Citus mode creates the database; plain Patroni does not, so do it here."""
        database = self.config.citus.database
        for m in leaders:
            dsn = self.plan.member_dsn(m, self.passwords.superuser, database="postgres")
            with psycopg.connect(dsn, autocommit=True) as conn:
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
                    conn.execute(f'CREATE DATABASE "{database}"')

    def _create_stanzas(self, leaders: list[Member]) -> None:
        """Each group's pgBackRest stanza, from its primary, before WAL piles up behind a failing archive_command
        (stanza-create is a no-op where the stanza exists)."""
        if not self.config.backups.enabled:
            return
        for m in leaders:
            argv = pgbackrest.command(self.plan, m, "stanza-create")
            done = processes.run_as_server_user(argv, timeout=120, cwd=str(self.base_dir))
            if done.returncode != 0:
                raise HarnessError(f"{m.name}: `{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()}")

    def _start_poolers(self, timeout: float, members: list[Member] | None = None) -> None:
        """PgBouncer next to every coordinator member (pooling.enabled), from its rendered file, as the server
        user; its auth_user and lookup function are created first (what provisioning does in Docker), since no
        client can log in through PgBouncer without them."""
        poolers = [m for m in (members or self.plan.coordinators) if m.pooler is not None]
        if not poolers:
            return
        ensure_pooler_auth(self.target, timeout=timeout)
        for m in poolers:
            self._spawn_pooler(m)
        for m in poolers:
            assert m.pooler is not None
            address = (m.pooler.endpoint.host, m.pooler.endpoint.port)
            self._wait(pooler_name(m), lambda address=address: _listens(address), timeout, "PgBouncer to listen")
        for m in poolers:
            if not self._running(pgbouncer_exporter_name(m)):
                self._spawn_pgbouncer_exporter(m)

    def _running(self, name: str) -> bool:
        return name in self.procs and self.procs[name].alive()

    def _spawn_pooler(self, member: Member) -> None:
        assert member.pooler is not None
        binary = processes.require_binary("pgbouncer", "install pgbouncer (see .ci/run)")
        processes.raise_open_files()
        proc = self._proc(member.name, [binary, member.pooler.config_path])  # in the member's namespace
        self._spawn(replace(proc, name=pooler_name(member), log=self._log(pooler_name(member))))

    def pooler_dsn(self, name: str, user: str | None = None, password: str | None = None) -> str:
        """A DSN straight to member `name`'s PgBouncer (no HAProxy), as the superuser unless told otherwise."""
        member = self.member(name)
        if member.pooler is None:
            raise HarnessError(f"{name} runs no PgBouncer (coordinator members with pooling.enabled only)")
        endpoint = member.pooler.endpoint
        dsn = self.plan._url(endpoint.host, endpoint.port, password or self.passwords.superuser,
                             user or SUPERUSER, None)
        return dsn if self.tls else plaintext_dsn(dsn)

    def _start_haproxy(self, timeout: float) -> None:
        binary = processes.require_binary("haproxy", "install haproxy (see .ci/run)")
        processes.raise_open_files()
        b = self.plan.balancer
        self._spawn(Proc(b.name, haproxy_command(self.plan, binary), self._log(b.name)))
        for role in ("read-write", "read-only"):
            self._wait(b.name, lambda role=role: _can_query(self.dsn(role)), timeout, f"SELECT 1 through {role}")

    # ---- member operations (drills and scaling) ----------------------------------------------------------
    def wait_member(self, name: str, role: str | None = None, timeout: float = STARTUP_TIMEOUT) -> None:
        """Until Patroni reports the member running (as `role`, if given)."""
        def ready() -> bool:
            status = self.rest(f"{self.patroni_url(name)}/patroni")
            running = status.get("state") in ("running", "streaming")
            return running and (role is None or member_role(status) == role)

        self._wait(name, ready, timeout, f"Patroni to report it running{f' as {role}' if role else ''}")

    def role_of(self, name: str) -> str | None:
        return member_role(self.rest(f"{self.patroni_url(name)}/patroni"))

    def leader(self, group: int) -> str:
        found = [m.name for m in self.plan.groups[group] if self.role_of(m.name) == "primary"]
        if len(found) != 1:
            raise HarnessError(f"group {group} has {len(found)} leaders: {found}")
        return found[0]

    def postmaster_pid(self, name: str) -> int:
        try:
            return int((Path(self.member(name).data_dir) / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def _signal_member(self, name: str, sig: signal.Signals) -> int:
        """Send `sig` to a member's Patroni, postmaster and backends (as Docker does to a container's processes)."""
        postmaster = self.postmaster_pid(name)
        backends = processes.children(postmaster) if postmaster else []
        processes.signal_group(self.procs[name].pid, sig)
        for pid in (postmaster, *backends):  # Patroni starts the postmaster in its own session
            processes.signal_group(pid, sig)
        pooler = self.procs.get(f"{name}-pgbouncer")  # PgBouncer shares the member's container
        if pooler is not None and pooler.alive():
            processes.signal_group(pooler.pid, sig)
        return postmaster

    def kill_member(self, name: str) -> None:
        """What `docker kill` does to a member container: Patroni and PostgreSQL die at once, no cleanup."""
        postmaster = self._signal_member(name, signal.SIGKILL)
        processes.wait_for(lambda: not self.procs[name].alive() and not processes.pid_alive(postmaster), 10)

    def freeze_member(self, name: str) -> None:
        """What `docker pause` does: every process of the member stops answering, as if cut off the network."""
        self._signal_member(name, signal.SIGSTOP)

    def thaw_member(self, name: str) -> None:
        self._signal_member(name, signal.SIGCONT)

    def kill_postgres(self, name: str) -> None:
        """A PostgreSQL crash under a live Patroni."""
        processes.signal_group(self.postmaster_pid(name), signal.SIGKILL)

    def stop_member(self, name: str) -> None:
        self._stop_procs([name, *self._poolers_of([name])])

    def _poolers_of(self, names: list[str]) -> list[str]:
        """The PgBouncer of each of `names` that has one, and its exporter (stopped and started with it)."""
        found = [m for m in self.plan.coordinators if m.name in names]
        return [p for m in found for p in (pooler_name(m), pgbouncer_exporter_name(m)) if p in self.procs]

    def stop_members(self, names: list[str]) -> None:
        """Stop several members together (thawed first: a frozen process would sit out SIGTERM until killed)."""
        for name in names:
            if name in self.procs and self.procs[name].alive():  # one already stopped (a lost group): its PID
                self.thaw_member(name)                           # may belong to another process by now
        self._stop_procs([*names, *self._poolers_of(names)])

    def start_members(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start every member as `up` does: each group's first member until it leads, then the others, then the
        coordinators' PgBouncers (stop_members stopped them with their members)."""
        self._start_members(list(self.plan.members), timeout)
        self._start_poolers(timeout)
        self.save()

    def dcs_prefix(self, group: int) -> str:
        """Where Patroni keeps group `group`'s keys in etcd: <namespace><scope>/<group>/ in Citus mode (one
        scope, a directory per group), <namespace><scope>-group<N>/ where each group is a Patroni cluster."""
        if self.citus:
            return dcs_prefix(self.plan, group)
        return f"{DCS_NAMESPACE}{self.plan.scope}-group{group}/"

    def forget_group(self, group: int) -> int:
        """Delete group `group`'s keys in etcd (leader, initialize, config, members, history, status), as
        `patronictl remove` does, so its next start bootstraps the group anew. Stop its members first: a
        running Patroni writes its keys back. Returns how many keys were deleted."""
        key, end = prefix_range(self.dcs_prefix(group))
        e = self.plan.etcd[0]
        tls = TlsPaths(e.tls_dir)  # etcd admits certified clients only: the harness uses the member's own
        body = {"key": base64.b64encode(key).decode(), "range_end": base64.b64encode(end).decode()}
        answer = post_json(f"https://{e.client.address}/v3/kv/deleterange", body, ca_file=tls.ca,
                           client_cert=(tls.cert, tls.key))
        return int(answer.get("deleted", 0))

    def start_member(self, name: str) -> None:
        """Start a member's Patroni, and its PgBouncer when it has one that is not running (the container)."""
        member = self.member(name)
        self._spawn(self._proc(name, [str(Path(sys.executable).parent / "patroni"), member.config_dir]))
        pooler = self.procs.get(pooler_name(member))
        if member.pooler is not None and (pooler is None or not pooler.alive()):
            self._spawn_pooler(member)
        if member.pooler is not None and not self._running(pgbouncer_exporter_name(member)):
            self._spawn_pgbouncer_exporter(member)

    def kill_process(self, name: str) -> None:
        """SIGKILL any harness process by name (etcd members, HAProxy)."""
        processes.signal_group(self.procs[name].pid, signal.SIGKILL)
        processes.wait_for(lambda: not self.procs[name].alive(), 10)

    def restart_process(self, name: str) -> None:
        """Start a stopped process again with its recorded command line (etcd keeps its data dir)."""
        proc = self.procs[name]
        self._spawn(Proc(name, proc.argv, proc.log, netns=proc.netns, cgroup=proc.cgroup), env=self._env(name))

    def switchover(self, leader: str, timeout: float = 60.0) -> None:
        """A planned switchover through the leader's Patroni REST API (authenticated, as unsafe endpoints are)."""
        self._rest(leader, "POST", "/switchover", {"leader": leader}, timeout)

    def patch_dcs(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change Patroni's dynamic configuration (kept in etcd) of every group; return the coordinator's before.

        In Citus mode each group is a Patroni cluster with its own configuration key, so each group's leader is
        asked. Drills use it to run with and without `failsafe_mode` on one cluster."""
        before = self.rest(f"{self.patroni_url(self.leader(0))}/config")
        for group in range(len(self.plan.groups)):
            self._rest(self.leader(group), "PATCH", "/config", changes, 10.0)
        return before

    def _rest(self, name: str, method: str, path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """An authenticated call to a member's Patroni REST API (unsafe endpoints need the credentials)."""
        try:
            return rest_send(f"{self.patroni_url(name)}{path}", body, (RESTAPI_USER, self.passwords.rest_api),
                             method, timeout, self.ca_file)
        except urllib.error.HTTPError as exc:
            raise HarnessError(f"{method} {path} on {name} answered {exc.code}: {exc.read()[:200]!r}") from None

    def revive(self, timeout: float = STARTUP_TIMEOUT) -> list[str]:
        """Bring back every process of the current plan that is not running (thawing frozen members first), as
        Docker's restart policy would; returns the names it had to start. Members of removed groups stay down."""
        self._adopt_recorded()
        members = {m.name for m in self.plan.members}
        for name in members & set(self.procs):
            self.thaw_member(name)  # SIGCONT is harmless to a running process
        poolers = [p for m in self.plan.coordinators if m.pooler is not None
                   for p in (pooler_name(m), pgbouncer_exporter_name(m))]
        wanted = [*members, *(e.name for e in self.plan.etcd), *poolers, self.plan.balancer.name,
                  *(self.exporter_name(m) for m in members)]
        dead = [name for name in wanted if name in self.procs and not self.procs[name].alive()]
        for name in dead:
            if name in poolers and self.procs[name].alive():
                continue  # started with its member just now
            if name in members:
                self.start_member(name)
            elif name == self.plan.balancer.name:
                self.start_haproxy(timeout)
            else:
                self.restart_process(name)
        for name in (n for n in dead if n in members):
            self.wait_member(name, timeout=timeout)
        return dead

    def stop_haproxy(self) -> None:
        self._stop_proc(self.plan.balancer.name)

    def start_haproxy(self, timeout: float = 30.0) -> None:
        self._start_haproxy(timeout)

    def wait_stats_password(self, old_stats: str, timeout: float = 30.0) -> None:
        """Until the stats page refuses the old password and takes the new one (delivery.takes_stats_password),
        as the Docker stack's provisioning waits."""
        url, ca = self.plan.stats_url, self.ca_file
        self._wait(self.plan.balancer.name, lambda: delivery.takes_stats_password(url, old_stats, self.passwords.stats,
                                                                                 ca), timeout,
                   "HAProxy to take the new stats password")

    def add_group(self, timeout: float = STARTUP_TIMEOUT) -> int:
        """One more worker group, started like the rest; returns its Citus group id."""
        raw = self.config.model_dump(mode="json", by_alias=True)
        raw["workers"]["groups"] += 1
        self.config = load_config(raw).config
        self.plan = self._plan()
        group = len(self.plan.groups) - 1
        self.write_files()
        self.save()
        if self.plan.host_network is not None:
            network.create(self.plan.host_network)  # only the new group's hosts are added
        cpuhosts.create(self.cpu_hosts)  # idempotent: the new group's members get theirs
        self._start_members(list(self.plan.groups[group]), timeout)
        self._start_exporters(list(self.plan.groups[group]))
        self.save()
        return group

    def remove_last_group(self) -> list[str]:
        """Stop the highest worker group's members (drain it first!) and take it out of the plan."""
        group = len(self.plan.groups) - 1
        names = [m.name for m in sorted(self.plan.groups[group], key=lambda m: -m.index)]
        for name in names:  # replicas first, so the leader's shutdown does not wait for a sync standby
            self._stop_proc(name)
            del self.procs[name]  # no longer part of the cluster: nothing to revive, signal or list
            if self.exporter_name(name) in self.procs:
                self._stop_proc(self.exporter_name(name))
                del self.procs[self.exporter_name(name)]
        raw = self.config.model_dump(mode="json", by_alias=True)
        raw["workers"]["groups"] -= 1
        self.config = load_config(raw).config
        self.plan = self._plan()
        self.save()
        return names

    # ---- internals ----------------------------------------------------------------------------------------
    def _log(self, name: str) -> str:
        return str(self.base_dir / "logs" / f"{name}.log")

    def _proc(self, name: str, argv: list[str]) -> Proc:
        """A server process of `name`, inside its host's namespace when the layout gives it one, and in its
        host's cpu group when hosts have a fixed size (a member's PgBouncer and exporter are made with the
        member's name, so they land on its host)."""
        net = self.plan.host_network
        netns = net.host(name).namespace if net is not None else ""
        host = cpuhosts.host_of(self.cpu_hosts, name)
        return Proc(name, argv, self._log(name), netns=netns, cgroup="" if host is None else host.group)

    def _spawn(self, proc: Proc, env: dict[str, str] | None = None) -> None:
        Path(proc.log).touch()
        processes.give_to_server_user(Path(proc.log))
        self.procs[proc.name] = processes.start(proc, env=env, cwd=str(self.base_dir))
        pid_file = self._pid_files().get(proc.name)
        if pid_file is not None:  # the wrappers exec in place: the PID is the server's own
            _write_private(Path(pid_file), f"{self.procs[proc.name].pid}\n")
        self.save()

    def _pid_files(self) -> dict[str, str]:
        """Where a rotation finds the PID of each Patroni and PgBouncer to signal (as the image's entrypoint
        writes them in a container)."""
        files = {m.name: pid_path(m) for m in self.plan.members}
        files |= {pooler_name(m): m.pooler.pid_file for m in self.plan.coordinators if m.pooler is not None}
        return files

    def _stop_proc(self, name: str) -> None:
        self._stop_procs([name])

    def _stop_procs(self, names: list[str]) -> None:
        """Stop `names` together; a postmaster whose Patroni died without stopping it is stopped too."""
        members = {m.name for m in self.plan.members}
        postmasters = [self.postmaster_pid(n) for n in names if n in members]
        processes.stop(*(self.procs[n].pid for n in names if n in self.procs))
        processes.stop(*(pid for pid in postmasters if pid))

    def _wait(self, name: str, condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        proc = self.procs.get(name)

        def check() -> bool:
            if proc is not None and not proc.alive():
                raise HarnessError(f"{name} exited while waiting for {what}; last log lines:\n{proc.tail()}")
            try:
                return bool(condition())
            except (OSError, psycopg.Error, ValueError):
                return False

        if not processes.wait_for(check, timeout, interval=0.3):
            tail = proc.tail() if proc else ""
            raise HarnessError(f"{name}: no {what} after {timeout:.0f} s; last log lines of {name}:\n{tail}")


def pooler_name(member: Member) -> str:
    """The harness's name for the PgBouncer process of coordinator member `member`."""
    return f"{member.name}-pgbouncer"


def pgbouncer_exporter_name(member: Member) -> str:
    """The harness's name for the prometheus-pgbouncer-exporter of `member`'s PgBouncer."""
    return f"{member.name}-pgbouncer-exporter"


def prefix_range(prefix: str) -> tuple[bytes, bytes]:
    """etcd's [key, range_end) covering every key that starts with `prefix` (its last byte plus one)."""
    key = prefix.encode()
    return key, key[:-1] + bytes([key[-1] + 1])


def _write_private(path: Path, text: str) -> None:
    """`text` into a new file at `path`, mode 0600 from its creation, owned by the server user; put in place by a
    rename, so a reader that watches the file (HAProxy's launcher) never sees half of it."""
    user = processes.server_user()
    staged = path.with_name(f".{path.name}.new")
    staged.unlink(missing_ok=True)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    if user is not None:
        os.fchown(fd, user.pw_uid, user.pw_gid)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    staged.replace(path)


def _listens(address: tuple[str, int]) -> bool:
    with socket.create_connection(address, timeout=1):
        return True


def _can_query(dsn: str) -> bool:
    with psycopg.connect(dsn, connect_timeout=2) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)
