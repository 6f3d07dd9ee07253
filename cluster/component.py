"""The cluster as Pulumi resources: one ComponentResource that turns a Plan into Docker objects.

Everything it declares comes from the plan and the renderers; this module only decides how those facts map
onto pulumi-docker resources (which depends on which, what is secret, what is kept on destroy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from cluster.config import PASSWORD_KEYS
from cluster.plan import (
    CONTAINER_PORTS,
    DOCKER_DATA_MOUNT,
    ETCD_DATA_MOUNT,
    PATRONI_VENV,
    SUPERUSER,
    EtcdMember,
    Member,
    Plan,
)
from cluster.provision.migrations import Migration
from cluster.provision.provider import Provisioning, WorkerGroup
from cluster.provision.target import target_from_plan
from cluster.render import (
    CONFIG_FILE,
    SECRETS_FILE,
    Passwords,
    etcd_command,
    image_spec,
    render_haproxy,
    render_patroni,
    render_patroni_secrets,
)
from cluster.render.haproxy import STATS_PASSWORD_ENV

RESTART_POLICY = "unless-stopped"  # a killed member comes back by itself and rejoins as a replica
HEALTHCHECK_SCRIPT = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/health', timeout=2)"


@dataclass(frozen=True)
class PasswordOutputs:
    superuser: pulumi.Output[str]
    replication: pulumi.Output[str]
    restapi: pulumi.Output[str]
    stats: pulumi.Output[str]
    app: pulumi.Output[str]

    def rendered(self) -> pulumi.Output[Passwords]:
        return pulumi.Output.all(self.superuser, self.replication, self.restapi, self.stats, self.app).apply(
            lambda values: Passwords(*values)
        )


class CitusCluster(pulumi.ComponentResource):
    """Citus + PostGIS under Patroni, etcd for consensus, HAProxy in front; all on one bridge network."""

    rw_dsn: pulumi.Output[str]
    ro_dsn: pulumi.Output[str]
    app_dsn: pulumi.Output[str]
    any_node_dsn: pulumi.Output[str] | None
    haproxy_stats_url: pulumi.Output[str]
    nodes: pulumi.Output[list]
    image: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        plan: Plan,
        supplied_passwords: dict[str, pulumi.Output[str]],
        build_dir: Path,
        migrations: list[Migration],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("citus-cluster:index:CitusCluster", name, None, opts)
        self._plan = plan
        provider = (
            docker.Provider("docker", host=plan.config.docker_host, opts=pulumi.ResourceOptions(parent=self))
            if plan.config.docker_host
            else None
        )
        self._child = pulumi.ResourceOptions(parent=self, provider=provider)
        self.passwords = self._passwords(supplied_passwords)
        self.network = self._network()
        self.node_image = self._node_image(build_dir)
        etcd_image, haproxy_image = self._remote_images()
        self.volumes = {v: self._volume(v) for v in [m.volume for m in plan.members] + [e.volume for e in plan.etcd]}
        self.etcd = [self._etcd(e, etcd_image) for e in plan.etcd]
        self.target = self._target()
        self.worker_groups = {g: self._worker_group(g) for g in range(1, len(plan.groups))}
        self.members = [self._member(m) for m in plan.members]
        self.haproxy = self._haproxy(haproxy_image)
        self.provisioning = self._provisioning(migrations)
        self._outputs()

    def _opts(self, **kwargs: object) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(**kwargs))  # type: ignore[arg-type]

    def _passwords(self, supplied: dict[str, pulumi.Output[str]]) -> PasswordOutputs:
        """Use the stack's secret passwords; generate the missing ones (kept secret in state)."""
        values = {}
        for key in PASSWORD_KEYS:
            if key in supplied:
                values[key] = pulumi.Output.secret(supplied[key])
            else:
                generated = random.RandomPassword(
                    key, length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
                )
                values[key] = pulumi.Output.secret(generated.result)  # explicit, not only by provider schema
        return PasswordOutputs(
            superuser=values["superuserPassword"],
            replication=values["replicationPassword"],
            restapi=values["restApiPassword"],
            stats=values["statsPassword"],
            app=values["appPassword"],
        )

    def _network(self) -> docker.Network:
        return docker.Network(
            self._plan.network,
            name=self._plan.network,
            driver="bridge",
            ipam_configs=[docker.NetworkIpamConfigArgs(subnet=str(self._plan.config.network.subnet))],
            opts=self._opts(),
        )

    def _node_image(self, build_dir: Path) -> docker.Image:
        """Build (never push) the database image; its tag changes whenever the Dockerfile does."""
        spec = image_spec(self._plan)
        context = build_dir / spec.tag
        context.mkdir(parents=True, exist_ok=True)
        (context / "Dockerfile").write_text(spec.dockerfile)
        return docker.Image(
            "node-image",
            image_name=spec.name,
            build=docker.DockerBuildArgs(context=str(context), dockerfile=str(context / "Dockerfile")),
            skip_push=True,
            opts=self._opts(),
        )

    def _remote_images(self) -> tuple[docker.RemoteImage, docker.RemoteImage]:
        v = self._plan.config.versions
        etcd = docker.RemoteImage(
            "etcd-image", name=f"quay.io/coreos/etcd:v{v.etcd}", keep_locally=True, opts=self._opts()
        )
        haproxy = docker.RemoteImage("haproxy-image", name=f"haproxy:{v.haproxy}", keep_locally=True, opts=self._opts())
        return etcd, haproxy

    def _volume(self, name: str) -> docker.Volume:
        retain = self._plan.config.storage.retain_on_destroy
        return docker.Volume(name, name=name, opts=self._opts(retain_on_delete=retain))

    def _network_attachment(self, hostname: str) -> list[docker.ContainerNetworksAdvancedArgs]:
        return [docker.ContainerNetworksAdvancedArgs(name=self.network.name, aliases=[hostname])]

    def _port(self, internal: int, external: int) -> docker.ContainerPortArgs:
        return docker.ContainerPortArgs(
            internal=internal, external=external, ip=str(self._plan.config.ports.bind_address)
        )

    def _etcd(self, member: EtcdMember, image: docker.RemoteImage) -> docker.Container:
        limits = self._plan.config.resources.etcd
        return docker.Container(
            member.name,
            name=member.name,
            hostname=member.name,
            image=image.image_id,
            command=etcd_command(self._plan, member, binary="/usr/local/bin/etcd"),
            networks_advanced=self._network_attachment(member.name),
            volumes=[
                docker.ContainerVolumeArgs(volume_name=self.volumes[member.volume].name, container_path=ETCD_DATA_MOUNT)
            ],
            restart=RESTART_POLICY,
            memory=limits.memory_mb,
            cpus=None if limits.cpus is None else str(limits.cpus),
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "/usr/local/bin/etcdctl", "endpoint", "health"],
                interval="5s",
                timeout="3s",
                retries=3,
                start_period="10s",
            ),
            opts=self._opts(),
        )

    def _member(self, member: Member) -> docker.Container:
        plan = self._plan
        limits = plan.config.resources.database
        secrets = self.passwords.rendered().apply(render_patroni_secrets)
        return docker.Container(
            member.name,
            name=member.name,
            hostname=member.name,
            image=self.node_image.image_name,
            networks_advanced=self._network_attachment(member.name),
            volumes=[
                docker.ContainerVolumeArgs(
                    volume_name=self.volumes[member.volume].name, container_path=DOCKER_DATA_MOUNT
                )
            ],
            ports=[
                self._port(CONTAINER_PORTS["postgres"], member.published_postgres),
                self._port(CONTAINER_PORTS["api"], member.published_api),
            ],
            uploads=[
                docker.ContainerUploadArgs(
                    file=f"{member.config_dir}/{CONFIG_FILE}", content=render_patroni(plan, member)
                ),
                docker.ContainerUploadArgs(file=f"{member.config_dir}/{SECRETS_FILE}", content=secrets),
            ],
            restart=RESTART_POLICY,
            memory=limits.memory_mb,
            cpus=None if limits.cpus is None else str(limits.cpus),
            shm_size=256,
            stop_timeout=30,
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=[
                    "CMD",
                    f"{PATRONI_VENV}/bin/python",
                    "-c",
                    HEALTHCHECK_SCRIPT.format(port=CONTAINER_PORTS["api"]),
                ],
                interval="5s",
                timeout="3s",
                retries=5,
                start_period="60s",
            ),
            labels=[
                docker.ContainerLabelArgs(label="citus-cluster.group", value=str(member.group)),
                docker.ContainerLabelArgs(label="citus-cluster.role", value=member.role),
            ],
            opts=self._opts(depends_on=[*self.etcd, *self._group_order(member.group)]),
        )

    def _group_order(self, group: int) -> list[pulumi.Resource]:
        """Deletion order for scale-in: a worker group's containers go before its registration resource; the
        coordinator depends on every group's, so a whole-cluster destroy removes it first and no SQL runs."""
        if group == 0:
            return list(self.worker_groups.values())
        return [self.worker_groups[group]]

    def _target(self) -> pulumi.Output[dict]:
        """Where provisioning connects (published ports) and what Citus registers; secret (carries passwords)."""
        plan = self._plan
        return pulumi.Output.secret(
            pulumi.Output.all(self.passwords.superuser, self.passwords.app).apply(
                lambda pw: target_from_plan(plan, pw[0], pw[1]).to_dict()
            )
        )

    def _worker_group(self, group: int) -> WorkerGroup:
        return WorkerGroup(
            f"worker-group-{group}",
            {"group": group, "target": self.target},
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["target"]),
        )

    def _provisioning(self, migrations: list[Migration]) -> Provisioning:
        """Health gate, registration, extensions, roles, schema and rebalance, after every container is up."""
        return Provisioning(
            "provisioning",
            {
                "target": self.target,
                "migrations": [{"name": m.name, "checksum": m.checksum, "sql": m.sql} for m in migrations],
            },
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*self.members, self.haproxy], additional_secret_outputs=["target"]
            ),
        )

    def _haproxy(self, image: docker.RemoteImage) -> docker.Container:
        plan = self._plan
        balancer = plan.balancer
        limits = plan.config.resources.haproxy
        return docker.Container(
            balancer.name,
            name=balancer.name,
            hostname=balancer.name,
            image=image.image_id,
            networks_advanced=self._network_attachment(balancer.name),
            ports=[self._port(CONTAINER_PORTS[role], port) for role, port in balancer.published.items()],
            uploads=[docker.ContainerUploadArgs(file=balancer.config_path, content=render_haproxy(plan))],
            envs=[pulumi.Output.concat(f"{STATS_PASSWORD_ENV}=", self.passwords.stats)],
            restart=RESTART_POLICY,
            memory=limits.memory_mb,
            cpus=None if limits.cpus is None else str(limits.cpus),
            opts=self._opts(depends_on=self.members),
        )

    def _dsn(self, role: Literal["read-write", "read-only", "any-node"], app: bool = False) -> pulumi.Output[str]:
        password, user = (
            (self.passwords.app, self._plan.config.citus.app_user) if app else (self.passwords.superuser, SUPERUSER)
        )
        return pulumi.Output.secret(password.apply(lambda pw: self._plan.dsn(role, pw, user)))

    def _outputs(self) -> None:
        plan = self._plan
        self.rw_dsn = self._dsn("read-write")
        self.ro_dsn = self._dsn("read-only")
        self.app_dsn = self._dsn("read-write", app=True)
        self.any_node_dsn = None if plan.balancer.any_node is None else self._dsn("any-node")
        self.haproxy_stats_url = pulumi.Output.from_input(plan.stats_url)
        self.nodes = pulumi.Output.from_input(plan.node_summaries())
        self.image = self.node_image.image_name
        self.register_outputs(
            {
                "rw_dsn": self.rw_dsn,
                "ro_dsn": self.ro_dsn,
                "app_dsn": self.app_dsn,
                **({"any_node_dsn": self.any_node_dsn} if self.any_node_dsn is not None else {}),
                "haproxy_stats_url": self.haproxy_stats_url,
                "nodes": self.nodes,
                "image": self.image,
                "provisioning": self.provisioning.id,
            }
        )
