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

from cluster import tls
from cluster.config.models import Limits
from cluster.plan import (
    CONTAINER_PORTS,
    DATABASE_UID,
    DOCKER_DATA_MOUNT,
    ETCD_DATA_MOUNT,
    PATRONI_VENV,
    PROMETHEUS_CONFIG_DIR,
    PROMETHEUS_DATA_MOUNT,
    SECRET_FILE_MODE,
    EtcdMember,
    Member,
    Plan,
)
from cluster.provision.certificates import Certificates, identity_props
from cluster.provision.migrations import Migration
from cluster.provision.provider import Provisioning, WorkerGroup
from cluster.provision.target import STATS_PASSWORD_OUTPUT, target_from_plan
from cluster.render import (
    etcd_command,
    image_spec,
    render_haproxy,
    render_patroni,
    render_pgbouncer,
)
from cluster.render import exporter as exporter_files
from cluster.render import pgbouncer_exporter as pgbouncer_exporter_files
from cluster.render import prometheus as prometheus_files
from cluster.render.dockerfile import monitoring_image_spec
from cluster.render.etcd import etcd_client_flags
from cluster.render.haproxy import LAUNCHER, courier_command, haproxy_command, render_haproxy_secrets
from cluster.render.patroni import config_path as patroni_config_path
from cluster.render.pgbackrest import S3_KEY_ENV, render_pgbackrest
from cluster.render.pgbackrest import config_path as pgbackrest_config_path
from cluster.render.secret_files import all_member_secrets, patroni_secrets_path
from cluster.secrets import REPOSITORY_KEYS, Passwords

RESTART_POLICY = "unless-stopped"  # a killed member comes back by itself and rejoins as a replica
HEALTHCHECK_SCRIPT = (
    "import ssl, urllib.request; urllib.request.urlopen('https://127.0.0.1:{port}/health', timeout=2, "
    "context=ssl.create_default_context(cafile='{ca}'))"
)
# Who owns the TLS files in each image (numeric: uploads resolve names on the Pulumi host, not in the image):
# postgres in the citusdata/citus image, haproxy in the official haproxy image, root in the etcd image.
FILE_OWNERS = {"node": str(DATABASE_UID), "haproxy": "99", "etcd": "0"}

EXPORTER_MEMORY_MB = 64

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
        certificates = self._certificates()
        backups = self._backup_volume()
        etcd = [self._etcd(e, etcd_image, network, volumes[e.volume], certificates) for e in plan.etcd]
        target = self._target(passwords)
        worker_groups = {g: self._worker_group(g, target, certificates) for g in range(1, len(plan.groups))}
        secrets = member_secret_files(plan, passwords)
        members = [
            self._member(m, node_image, network, volumes[m.volume], secrets.apply(lambda s, i=i: s[i]), certificates,
                         depends_on=[*etcd, *group_order(m.group, worker_groups)],
                         backups=backups, repository_keys=supplied_passwords)
            for i, m in enumerate(plan.members)
        ]
        haproxy = self._haproxy(haproxy_image, network, passwords.stats, certificates, depends_on=members)
        provisioning = self._provisioning(target, migrations, certificates, secrets, members, passwords.stats,
                                          depends_on=[*members, haproxy])
        self.outputs = self._outputs(passwords, node_image, provisioning, certificates)
        if plan.config.monitoring.enabled:
            self.outputs["prometheus_url"] = self._monitoring(build_dir, network, members, haproxy, passwords,
                                                              certificates)
        self.register_outputs(self.outputs)

    def _opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(**kwargs))

    def _passwords(self, supplied: dict[str, pulumi.Output[str]]) -> SecretPasswords:
        """Use the stack's secret passwords; generate the missing ones (kept secret in state)."""

        def value(name: str, _: object) -> pulumi.Output[str]:
            key = Passwords.stack_key(name)
            if key in supplied:
                return pulumi.Output.secret(supplied[key])
            if name == "monitoring" and not self._plan.config.monitoring.enabled:
                return pulumi.Output.secret("")  # no exporter logs in: no role, no password
            generated = random.RandomPassword(key, length=32, special=False, opts=pulumi.ResourceOptions(parent=self))
            return pulumi.Output.secret(generated.result)  # explicit, not only by provider schema

        return Passwords(**dict.fromkeys(Passwords.names())).map(value)  # type: ignore[arg-type]

    def _certificates(self) -> Certificates:
        """The stack's CA and every process's certificate, kept in the state (see cluster/provision/certificates)."""
        props = {"scope": self._plan.scope, "identities": identity_props(tls.identities(self._plan))}
        return Certificates("certificates", props, opts=pulumi.ResourceOptions(parent=self))

    def _tls_uploads(self, name: str, certificates: Certificates, owner: str) -> list[docker.ContainerUploadArgs]:
        """Process `name`'s CA, certificate and key as files owned by the user it runs as; keys 0600 and secret."""
        identity = next(i for i in tls.identities(self._plan) if i.name == name)

        def upload(path: str, secret: bool, pick: Any) -> docker.ContainerUploadArgs:
            content = pulumi.Output.all(certificates.ca_cert, certificates.leaves).apply(
                lambda values: pick(values[0], tls.Issued.from_dict(values[1][name]))
            )
            return docker.ContainerUploadArgs(
                file=path,
                content=pulumi.Output.secret(content) if secret else content,
                owner=owner,
                group=owner,
                permissions=SECRET_FILE_MODE if secret else "0644",
            )

        return [
            upload(path, secret, lambda ca, leaf, path=path: tls.files_for(identity, ca, leaf)[path][0])
            for path, secret in tls.file_secrecy(identity).items()
        ]

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

    def _backup_volume(self) -> docker.Volume | None:
        """The pgBackRest repository every database container mounts (kept on destroy with the data volumes when
        storage.retainOnDestroy). None when backups are off or go to S3."""
        backups = self._plan.config.backups
        if not backups.enabled or backups.repository.type != "volume":
            return None
        return self._volume(backup_volume_name(self._plan))

    def _container(
        self,
        name: str,
        network: docker.Network,
        limits: Limits,
        depends_on: list[pulumi.Resource] | None = None,
        ignore_changes: list[str] | None = None,
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
            opts=self._opts(depends_on=depends_on or [], ignore_changes=ignore_changes),
            **settings,
        )

    @staticmethod
    def _secret_upload(path: str, content: pulumi.Output[str]) -> docker.ContainerUploadArgs:
        """A file only the server user may read: 0600, owned by it (numeric: resolved in the image)."""
        owner = FILE_OWNERS["node"]
        return docker.ContainerUploadArgs(file=path, content=pulumi.Output.secret(content), owner=owner, group=owner,
                                          permissions=SECRET_FILE_MODE)

    def _port(self, role: str, external: int) -> docker.ContainerPortArgs:
        return docker.ContainerPortArgs(
            internal=CONTAINER_PORTS[role], external=external, ip=str(self._plan.config.ports.bind_address)
        )

    def _etcd(
        self,
        member: EtcdMember,
        image: docker.RemoteImage,
        network: docker.Network,
        volume: docker.Volume,
        certificates: Certificates,
    ) -> docker.Container:
        return self._container(
            member.name,
            network,
            self._plan.config.resources.etcd,
            image=image.image_id,
            command=etcd_command(self._plan, member, binary="/usr/local/bin/etcd"),
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=ETCD_DATA_MOUNT)],
            uploads=self._tls_uploads(member.name, certificates, FILE_OWNERS["etcd"]),
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "/usr/local/bin/etcdctl", *etcd_client_flags(member), "endpoint", "health"],
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
        secrets: pulumi.Output[dict[str, str]],
        certificates: Certificates,
        depends_on: list[pulumi.Resource],
        backups: docker.Volume | None = None,
        repository_keys: dict[str, pulumi.Output[str]] | None = None,
    ) -> docker.Container:
        """The secret files are uploads for the container's creation only: their later changes (a rotation) are
        ignored here, else pulumi-docker would replace the container, and provisioning delivers them into the
        running member instead (cluster.provision.delivery)."""
        plan = self._plan
        mounts = [docker.ContainerVolumeArgs(volume_name=volume.name, container_path=DOCKER_DATA_MOUNT)]
        if backups is not None:
            mounts.append(docker.ContainerVolumeArgs(volume_name=backups.name, container_path=plan.backup_dir))
        uploads = [
            docker.ContainerUploadArgs(file=patroni_config_path(member), content=render_patroni(plan, member)),
            self._secret_upload(patroni_secrets_path(member), secrets.apply(lambda f: f["patroni_text"])),
        ]
        delivered = [1]  # indices of the uploads provisioning delivers after creation
        if plan.config.backups.enabled:
            uploads.append(docker.ContainerUploadArgs(file=pgbackrest_config_path(member),
                                                      content=render_pgbackrest(plan, member)))
        if member.pooler is not None:
            # The image's entrypoint starts PgBouncer when its file is there (coordinator members only).
            uploads.append(docker.ContainerUploadArgs(file=member.pooler.config_path,
                                                      content=render_pgbouncer(plan, member)))
            delivered.append(len(uploads))
            uploads.append(self._secret_upload(member.pooler.auth_file, secrets.apply(lambda f: f["pooler_text"])))
        uploads += self._tls_uploads(member.name, certificates, FILE_OWNERS["node"])
        keys = repository_keys or {}
        envs = [pulumi.Output.concat(f"{S3_KEY_ENV[key]}=", pulumi.Output.secret(keys[key]))
                for key in REPOSITORY_KEYS if key in keys and plan.config.backups.repository.type == "s3"]
        return self._container(
            member.name,
            network,
            plan.config.resources.database,
            depends_on=depends_on,
            image=image.image_name,
            volumes=mounts,
            ports=[self._port("postgres", member.published_postgres), self._port("api", member.published_api)],
            uploads=uploads,
            envs=envs,
            shm_size=256,
            stop_timeout=30,
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=[
                    "CMD", f"{PATRONI_VENV}/bin/python", "-c",
                    HEALTHCHECK_SCRIPT.format(port=member.api.port, ca=tls.TlsPaths(member.tls_dir).ca),
                ],
                interval="5s",
                timeout="3s",
                retries=5,
                start_period="60s",
            ),
            ignore_changes=[f"uploads[{i}].content" for i in delivered],
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
        certificates: Certificates,
        depends_on: list[docker.Container],
    ) -> docker.Container:
        """HAProxy under its launcher (cluster.render.haproxy.LAUNCHER), which reloads it when the secrets file in
        its volume changes; that file is written by a one-shot courier container (_stats_courier), so a new stats
        password replaces the courier and reloads HAProxy: the balancer's container and sessions stay."""
        balancer = self._plan.balancer
        volume = docker.Volume(balancer.secrets_volume, name=balancer.secrets_volume, opts=self._opts())
        courier = self._stats_courier(image, volume, stats_password)
        return self._container(
            balancer.name,
            network,
            self._plan.config.resources.haproxy,
            depends_on=[*depends_on, courier],
            image=image.image_id,
            ports=[self._port(role, port) for role, port in balancer.published.items()],
            # Ours, not the image's entrypoint script: both files, master-worker (SIGUSR2 reloads), foreground.
            entrypoints=haproxy_command(self._plan),
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=balancer.secrets_dir,
                                                read_only=True)],
            uploads=[
                docker.ContainerUploadArgs(file=balancer.config_path, content=render_haproxy(self._plan)),
                docker.ContainerUploadArgs(file=balancer.launcher_path, content=LAUNCHER),
                *self._tls_uploads(balancer.name, certificates, FILE_OWNERS["haproxy"]),
            ],
        )

    def _stats_courier(
        self, image: docker.RemoteImage, volume: docker.Volume, stats_password: pulumi.Output[str]
    ) -> docker.Container:
        """Runs once per stats password: copies its upload into HAProxy's secrets volume (0600, HAProxy's user, by
        a rename) and exits. Its upload changing replaces it (deleted first: the name is fixed), which runs the
        copy again; HAProxy's launcher sees the new file within a second and reloads."""
        balancer = self._plan.balancer
        staged = f"/run/courier/{balancer.secrets_path.rsplit('/', 1)[1]}"
        return docker.Container(
            f"{balancer.name}-courier",
            name=f"{balancer.name}-courier",
            image=image.image_id,
            user="0",  # the volume's directory is root's; the file it leaves is HAProxy's user's
            entrypoints=courier_command(self._plan, staged, FILE_OWNERS["haproxy"]),
            network_mode="none",
            attach=True,  # create waits for the copy to finish ...
            must_run=False,  # ... and an exited courier is its expected state, not a container to restart
            restart="no",
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=balancer.secrets_dir)],
            uploads=[docker.ContainerUploadArgs(
                file=staged, content=pulumi.Output.secret(stats_password).apply(render_haproxy_secrets),
                permissions=SECRET_FILE_MODE)],
            opts=self._opts(delete_before_replace=True),
        )

    def _monitoring(
        self,
        build_dir: Path,
        network: docker.Network,
        members: list[docker.Container],
        haproxy: docker.Container,
        passwords: SecretPasswords,
        certificates: Certificates,
    ) -> pulumi.Output[str]:
        """monitoring.enabled: an exporter beside every member and one Prometheus; returns Prometheus's URL."""
        image = self._image("monitoring-image", monitoring_image_spec(self._plan), build_dir)
        exporters = [self._exporter(m, container, image, passwords.monitoring, certificates)
                     for m, container in zip(self._plan.members, members, strict=True)]
        exporters += [self._pgbouncer_exporter(m, container, image, passwords.monitoring, certificates)
                      for m, container in zip(self._plan.members, members, strict=True) if m.pooler is not None]
        self._prometheus(image, network, passwords.stats, certificates, depends_on=[*exporters, haproxy])
        return pulumi.Output.from_input(self._plan.prometheus_url)

    def _image(self, name: str, spec: Any, build_dir: Path) -> docker.Image:
        context = build_dir / spec.repository / spec.tag
        context.mkdir(parents=True, exist_ok=True)
        (context / "Dockerfile").write_text(spec.dockerfile)
        return docker.Image(
            name,
            image_name=spec.name,
            build=docker.DockerBuildArgs(context=str(context), dockerfile=str(context / "Dockerfile")),
            skip_push=True,
            opts=self._opts(),
        )

    def _exporter(
        self,
        member: Member,
        container: docker.Container,
        image: docker.Image,
        password: pulumi.Output[str],
        certificates: Certificates,
    ) -> docker.Container:
        """prometheus-postgres-exporter in the member's network namespace (reached at member:9187, like the member
        itself); the rendered queries, its password as a 0600 file, the member's TLS files."""
        plan = self._plan
        directory = exporter_files.exporter_dir(plan, member)
        uploads = [docker.ContainerUploadArgs(file=f"{directory}/{name}", content=text)
                   for name, text in exporter_files.render_exporter_files(plan, member).items()]
        uploads.append(self._secret_upload(f"{directory}/{exporter_files.PASSWORD_FILE}", password))
        return self._sidecar(self._plan.sidecars(member)[0], member, container, image, certificates,
                             exporter_files.exporter_command(plan, member),
                             exporter_files.exporter_env(plan, member), uploads)

    def _pgbouncer_exporter(
        self,
        member: Member,
        container: docker.Container,
        image: docker.Image,
        password: pulumi.Output[str],
        certificates: Certificates,
    ) -> docker.Container:
        """prometheus-pgbouncer-exporter in the coordinator member's network namespace (reached at member:9127),
        as the postgres exporter beside it: its config and launcher, the monitoring password as a 0600 pgpass
        file (secret), the member's TLS files."""
        plan = self._plan
        directory = pgbouncer_exporter_files.pgbouncer_exporter_dir(plan, member)
        uploads = [docker.ContainerUploadArgs(file=f"{directory}/{name}", content=text)
                   for name, text in pgbouncer_exporter_files.render_pgbouncer_exporter_files(plan, member).items()]
        uploads.append(self._secret_upload(f"{directory}/{pgbouncer_exporter_files.PGPASS_FILE}",
                                           password.apply(pgbouncer_exporter_files.render_pgpass)))
        return self._sidecar(self._plan.sidecars(member)[1], member, container, image, certificates,
                             pgbouncer_exporter_files.pgbouncer_exporter_command(plan, member),
                             pgbouncer_exporter_files.pgbouncer_exporter_env(plan, member), uploads)

    def _sidecar(
        self,
        name: str,
        member: Member,
        container: docker.Container,
        image: docker.Image,
        certificates: Certificates,
        argv: list[str],
        env: dict[str, str],
        uploads: list[docker.ContainerUploadArgs],
    ) -> docker.Container:
        """A process beside `member` in its container's network namespace (reached at the member's name), with
        its files, the member's TLS files, and the exporters' restart policy and memory."""
        owner = FILE_OWNERS["node"]
        return docker.Container(
            name,
            name=name,
            image=image.image_name,
            network_mode=container.id.apply(lambda cid: f"container:{cid}"),
            entrypoints=argv[:1],
            command=argv[1:],
            envs=[f"{key}={value}" for key, value in env.items()],
            uploads=[*uploads, *self._tls_uploads(member.name, certificates, owner)],
            restart=RESTART_POLICY,
            memory=EXPORTER_MEMORY_MB,
            opts=self._opts(depends_on=[container]),
        )

    def _prometheus(
        self,
        image: docker.Image,
        network: docker.Network,
        stats_password: pulumi.Output[str],
        certificates: Certificates,
        depends_on: list[pulumi.Resource],
    ) -> docker.Container:
        """Prometheus with the rendered scrape config and rules; its TSDB on a volume, its UI over HTTPS with its
        own certificate (which etcd accepts as a client certificate) on the published monitoring.port."""
        plan = self._plan
        name = plan.prometheus_name
        password_file = f"{PROMETHEUS_CONFIG_DIR}/{prometheus_files.STATS_PASSWORD_FILE}"
        files = prometheus_files.container_files(plan)
        owner = FILE_OWNERS["node"]
        uploads = [docker.ContainerUploadArgs(file=f"{PROMETHEUS_CONFIG_DIR}/{n}", content=text)
                   for n, text in files.items()]
        uploads.append(docker.ContainerUploadArgs(file=password_file, content=pulumi.Output.secret(stats_password),
                                                  owner=owner, group=owner, permissions=SECRET_FILE_MODE))
        volume = self._volume(f"{name}-data")
        return self._container(
            name,
            network,
            plan.config.monitoring.resources,
            depends_on=depends_on,
            image=image.image_name,
            entrypoints=["prometheus"],
            command=[f"--config.file={PROMETHEUS_CONFIG_DIR}/{prometheus_files.SCRAPE_FILE}",
                     f"--storage.tsdb.path={PROMETHEUS_DATA_MOUNT}",
                     f"--web.config.file={PROMETHEUS_CONFIG_DIR}/{prometheus_files.WEB_FILE}",
                     f"--web.listen-address=0.0.0.0:{CONTAINER_PORTS['prometheus']}"],
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=PROMETHEUS_DATA_MOUNT)],
            ports=[self._port("prometheus", plan.config.monitoring.port)],
            uploads=[*uploads, *self._tls_uploads(name, certificates, owner)],
        )

    def _target(self, passwords: SecretPasswords) -> pulumi.Output[dict]:
        """Where provisioning connects (published ports) and what Citus registers; secret (carries passwords)."""
        plan = self._plan
        return pulumi.Output.secret(
            pulumi.Output.all(passwords.superuser, passwords.app, passwords.replication, passwords.rest_api,
                              passwords.monitoring, passwords.pooler).apply(
                lambda pw: target_from_plan(plan, *pw[:4], monitoring_password=pw[4], pooler_password=pw[5]).to_dict()
            )
        )

    def _worker_group(self, group: int, target: pulumi.Output[dict], certificates: Certificates) -> WorkerGroup:
        return WorkerGroup(
            f"worker-group-{group}",
            {"group": group, "target": target, "ca_cert": certificates.ca_cert},
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["target"]),
        )

    def _provisioning(
        self,
        target: pulumi.Output[dict],
        migrations: list[Migration],
        certificates: Certificates,
        secrets: pulumi.Output[list[dict[str, str]]],
        members: list[docker.Container],
        stats_password: pulumi.Output[str],
        depends_on: list[pulumi.Resource],
    ) -> Provisioning:
        """Health gate, registration, extensions, roles, schema and rebalance, after every container is up.
        It dials verified TLS, so it gets the CA (written where the target's `ca_file` says, on this machine).
        It also gets every member's secret files and container ID: when either changes (a rotation; a container
        replaced, created with the files of its first creation) it delivers the files into the running members;
        and the stats password, to wait after a new one until HAProxy has taken it."""
        containers = {m.name: c.id for m, c in zip(self._plan.members, members, strict=True)}
        return Provisioning(
            "provisioning",
            {"target": target, "migrations": [m.to_dict() for m in migrations], "ca_cert": certificates.ca_cert,
             "secrets": secrets, "containers": containers, "stats": pulumi.Output.secret(stats_password)},
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on,
                                        additional_secret_outputs=["target", "secrets", "stats"]),
        )

    def _outputs(
        self, passwords: SecretPasswords, image: docker.Image, provisioning: Provisioning, certificates: Certificates
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
            "ca_cert": certificates.ca_cert,  # public: what `python -m cluster ca` writes for clients
            STATS_PASSWORD_OUTPUT: pulumi.Output.secret(passwords.stats),  # for `python -m cluster status`
            "nodes": pulumi.Output.from_input(plan.node_summaries()),
            "image": image.image_name,
            "citus_nodes": provisioning.nodes,
            "shard_counts": provisioning.shard_counts,
        }


def backup_volume_name(plan: Plan) -> str:
    return f"{plan.config.name}-backups"


def member_secret_files(plan: Plan, passwords: SecretPasswords) -> pulumi.Output[list[dict[str, str]]]:
    """Every member's secret files (cluster.render.secret_files), rendered once from the resolved passwords;
    secret, as its inputs are."""
    names = Passwords.names()
    return pulumi.Output.secret(pulumi.Output.all(*(getattr(passwords, n) for n in names)).apply(
        lambda values: [s.to_dict() for s in all_member_secrets(plan, Passwords(**dict(zip(names, values,
                                                                                             strict=True))))]))


def group_order(group: int, worker_groups: dict[int, WorkerGroup]) -> list[pulumi.Resource]:
    """Deletion order for scale-in: a worker group's containers go before its registration resource; the
    coordinator depends on every group's, so a whole-cluster destroy removes it first and no SQL runs."""
    if group == 0:
        return list(worker_groups.values())
    return [worker_groups[group]]
