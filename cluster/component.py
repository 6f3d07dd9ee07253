"""The cluster as Pulumi resources: one ComponentResource that turns a Plan into Docker objects.

Everything it declares comes from the plan and the renderers; this module only decides how those facts map
onto pulumi-docker resources (which depends on which, what is secret, what is kept on destroy). Each resource
is made by a method that receives what it depends on as arguments, so the order in `__init__` is the
dependency order and nothing is read from an attribute an earlier line happened to set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from cluster.config.models import Limits
from cluster.plan import (
    CONTAINER_PORTS,
    DOCKER_DATA_MOUNT,
    ETCD_DATA_MOUNT,
    PATRONI_VENV,
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
    etcd_command,
    image_spec,
    render_haproxy,
    render_patroni,
    render_patroni_secrets,
)
from cluster.render.haproxy import STATS_PASSWORD_ENV
from cluster.secrets import Passwords

RESTART_POLICY = "unless-stopped"  # a killed member comes back by itself and rejoins as a replica
HEALTHCHECK_SCRIPT = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/health', timeout=2)"

SecretPasswords = Passwords[pulumi.Output[str]]


class CitusCluster(pulumi.ComponentResource):
    """Citus + PostGIS under Patroni, etcd for consensus, HAProxy in front; all on one bridge network.

    `outputs` holds every stack output by name (the Pulumi program exports exactly these).
    """

    outputs: dict[str, pulumi.Output[Any]]

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

        passwords = self._passwords(supplied_passwords)
        network = self._network()
        node_image = self._node_image(build_dir)
        etcd_image, haproxy_image = self._remote_images()
        volumes = {v: self._volume(v) for v in [m.volume for m in plan.members] + [e.volume for e in plan.etcd]}
        etcd = [self._etcd(e, etcd_image, network, volumes[e.volume]) for e in plan.etcd]
        target = self._target(passwords)
        worker_groups = {g: self._worker_group(g, target) for g in range(1, len(plan.groups))}
        secrets_file = passwords_file(passwords)
        members = [
            self._member(m, node_image, network, volumes[m.volume], secrets_file,
                         depends_on=[*etcd, *group_order(m.group, worker_groups)])
            for m in plan.members
        ]
        haproxy = self._haproxy(haproxy_image, network, passwords.stats, depends_on=members)
        provisioning = self._provisioning(target, migrations, depends_on=[*members, haproxy])
        self.outputs = self._outputs(passwords, node_image, provisioning)
        self.register_outputs(self.outputs)

    def _opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(**kwargs))

    def _passwords(self, supplied: dict[str, pulumi.Output[str]]) -> SecretPasswords:
        """Use the stack's secret passwords; generate the missing ones (kept secret in state)."""

        def value(name: str, _: object) -> pulumi.Output[str]:
            key = Passwords.stack_key(name)
            if key in supplied:
                return pulumi.Output.secret(supplied[key])
            generated = random.RandomPassword(key, length=32, special=False, opts=pulumi.ResourceOptions(parent=self))
            return pulumi.Output.secret(generated.result)  # explicit, not only by provider schema

        return Passwords(**dict.fromkeys(Passwords.names())).map(value)  # type: ignore[arg-type]

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

    def _container(
        self,
        name: str,
        network: docker.Network,
        limits: Limits,
        depends_on: list[pulumi.Resource] | None = None,
        **settings: Any,
    ) -> docker.Container:
        """What every container of the cluster shares: its name as hostname and network alias, the restart
        policy, its resource limits, and being a child of this component."""
        return docker.Container(
            name,
            name=name,
            hostname=name,
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network.name, aliases=[name])],
            restart=RESTART_POLICY,
            memory=limits.memory_mb,
            cpus=None if limits.cpus is None else str(limits.cpus),
            opts=self._opts(depends_on=depends_on or []),
            **settings,
        )

    def _port(self, role: str, external: int) -> docker.ContainerPortArgs:
        return docker.ContainerPortArgs(
            internal=CONTAINER_PORTS[role], external=external, ip=str(self._plan.config.ports.bind_address)
        )

    def _etcd(
        self, member: EtcdMember, image: docker.RemoteImage, network: docker.Network, volume: docker.Volume
    ) -> docker.Container:
        return self._container(
            member.name,
            network,
            self._plan.config.resources.etcd,
            image=image.image_id,
            command=etcd_command(self._plan, member, binary="/usr/local/bin/etcd"),
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=ETCD_DATA_MOUNT)],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "/usr/local/bin/etcdctl", "endpoint", "health"],
                interval="5s",
                timeout="3s",
                retries=3,
                start_period="10s",
            ),
        )

    def _member(
        self,
        member: Member,
        image: docker.Image,
        network: docker.Network,
        volume: docker.Volume,
        secrets_file: pulumi.Output[str],
        depends_on: list[pulumi.Resource],
    ) -> docker.Container:
        plan = self._plan
        return self._container(
            member.name,
            network,
            plan.config.resources.database,
            depends_on=depends_on,
            image=image.image_name,
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=DOCKER_DATA_MOUNT)],
            ports=[self._port("postgres", member.published_postgres), self._port("api", member.published_api)],
            uploads=[
                docker.ContainerUploadArgs(
                    file=f"{member.config_dir}/{CONFIG_FILE}", content=render_patroni(plan, member)
                ),
                docker.ContainerUploadArgs(file=f"{member.config_dir}/{SECRETS_FILE}", content=secrets_file),
            ],
            shm_size=256,
            stop_timeout=30,
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", f"{PATRONI_VENV}/bin/python", "-c", HEALTHCHECK_SCRIPT.format(port=member.api.port)],
                interval="5s",
                timeout="3s",
                retries=5,
                start_period="60s",
            ),
            labels=[
                docker.ContainerLabelArgs(label="citus-cluster.group", value=str(member.group)),
                docker.ContainerLabelArgs(label="citus-cluster.role", value=member.role),
            ],
        )

    def _haproxy(
        self,
        image: docker.RemoteImage,
        network: docker.Network,
        stats_password: pulumi.Output[str],
        depends_on: list[docker.Container],
    ) -> docker.Container:
        balancer = self._plan.balancer
        return self._container(
            balancer.name,
            network,
            self._plan.config.resources.haproxy,
            depends_on=list(depends_on),
            image=image.image_id,
            ports=[self._port(role, port) for role, port in balancer.published.items()],
            uploads=[docker.ContainerUploadArgs(file=balancer.config_path, content=render_haproxy(self._plan))],
            envs=[pulumi.Output.concat(f"{STATS_PASSWORD_ENV}=", stats_password)],
        )

    def _target(self, passwords: SecretPasswords) -> pulumi.Output[dict]:
        """Where provisioning connects (published ports) and what Citus registers; secret (carries passwords)."""
        plan = self._plan
        return pulumi.Output.secret(
            pulumi.Output.all(passwords.superuser, passwords.app).apply(
                lambda pw: target_from_plan(plan, pw[0], pw[1]).to_dict()
            )
        )

    def _worker_group(self, group: int, target: pulumi.Output[dict]) -> WorkerGroup:
        return WorkerGroup(
            f"worker-group-{group}",
            {"group": group, "target": target},
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["target"]),
        )

    def _provisioning(
        self, target: pulumi.Output[dict], migrations: list[Migration], depends_on: list[pulumi.Resource]
    ) -> Provisioning:
        """Health gate, registration, extensions, roles, schema and rebalance, after every container is up."""
        return Provisioning(
            "provisioning",
            {"target": target, "migrations": [m.to_dict() for m in migrations]},
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on, additional_secret_outputs=["target"]),
        )

    def _outputs(
        self, passwords: SecretPasswords, image: docker.Image, provisioning: Provisioning
    ) -> dict[str, pulumi.Output[Any]]:
        plan = self._plan
        dsns = {
            out.name: pulumi.Output.secret(
                getattr(passwords, out.credential).apply(
                    lambda pw, out=out: plan.dsn(out.listener, pw, plan.user(out.credential))
                )
            )
            for out in plan.dsn_outputs()
        }
        return {
            **dsns,
            "haproxy_stats_url": pulumi.Output.from_input(plan.stats_url),
            "nodes": pulumi.Output.from_input(plan.node_summaries()),
            "image": image.image_name,
            "citus_nodes": provisioning.nodes,
            "shard_counts": provisioning.shard_counts,
        }


def passwords_file(passwords: SecretPasswords) -> pulumi.Output[str]:
    """Patroni's secrets file, rendered once from the resolved passwords (secret, as its inputs are)."""
    names = Passwords.names()
    return pulumi.Output.all(*(getattr(passwords, n) for n in names)).apply(
        lambda values: render_patroni_secrets(Passwords(**dict(zip(names, values, strict=True))))
    )


def group_order(group: int, worker_groups: dict[int, WorkerGroup]) -> list[pulumi.Resource]:
    """Deletion order for scale-in: a worker group's containers go before its registration resource; the
    coordinator depends on every group's, so a whole-cluster destroy removes it first and no SQL runs."""
    if group == 0:
        return list(worker_groups.values())
    return [worker_groups[group]]
