"""Bad stack configs are refused before anything is declared, each problem named by its key and with a fix."""

from __future__ import annotations

from typing import Any

import pytest

from cluster.config import ConfigError, load_config
from cluster.config.sources import read_stack_file, split_project_keys, stack_file

PW = "superuserPassword"
S3 = {"backups": {"repository": {"type": "s3", "s3": {"endpoint": "minio:9000", "bucket": "pg-backups"}}}}

# (id, raw config, secret keys, expected key path, fragment of the message that says what to do)
BAD: list[tuple[str, dict[str, Any], set[str], str, str]] = [
    ("negative-worker-groups", {"workers": {"groups": -1}}, set(), "workers.groups", "greater than or equal to 1"),
    ("zero-worker-members", {"workers": {"members": 0}}, set(), "workers.members", "greater than or equal to 1"),
    ("zero-coordinators", {"coordinator": {"members": 0}}, set(), "coordinator.members", "greater than or equal"),
    ("too-many-coordinators", {"coordinator": {"members": 10}}, set(), "coordinator.members", "less than or equal"),
    ("unknown-top-level-key", {"wokers": {"groups": 2}}, set(), "wokers", "Known keys here"),
    ("unknown-nested-key", {"workers": {"group": 2}}, set(), "workers.group", "groups, members"),
    ("shard-count-zero", {"citus": {"shardCount": 0}}, set(), "citus.shardCount", "greater than or equal to 1"),
    ("int-as-text", {"workers": {"groups": "three"}}, set(), "workers.groups", "valid integer"),
    ("bad-version-pair", {"versions": {"postgres": 14, "citus": "13.2.0"}}, set(), "versions.postgres",
     "Change versions.postgres or versions.citus"),
    ("unknown-citus-line", {"versions": {"citus": "9.5.0"}}, set(), "versions.citus", "use one of"),
    ("citus-not-semver", {"versions": {"citus": "latest"}}, set(), "versions.citus", "should match pattern"),
    ("postgis-too-old-for-pg", {"versions": {"postgres": 17, "postgis": "3.3"}}, set(), "versions.postgis",
     "does not support PostgreSQL 17"),
    ("unknown-postgis-line", {"versions": {"postgis": "3.9"}}, set(), "versions.postgis", "unknown PostGIS line"),
    ("duplicate-rw-ro-port", {"ports": {"readOnly": 5432}}, set(), "ports.readOnly", "already used by"),
    ("port-inside-member-range", {"ports": {"stats": 15433}}, set(), "ports.postgresBase", "already used by"),
    ("member-range-above-65535", {"ports": {"patroniBase": 65530}}, set(), "ports.patroniBase", "above 65535"),
    ("port-out-of-range", {"ports": {"readWrite": 70000}}, set(), "ports.readWrite", "less than or equal to 65535"),
    ("public-bind-without-opt-in", {"ports": {"bindAddress": "0.0.0.0"}}, set(), "ports.bindAddress",
     "allowPublicBind"),
    ("lan-bind-without-opt-in", {"ports": {"bindAddress": "192.168.1.20"}}, set(), "ports.bindAddress",
     "allowPublicBind"),
    ("bind-not-an-address", {"ports": {"bindAddress": "localhost"}}, set(), "ports.bindAddress", "IPv4"),
    ("plain-text-password", {PW: "hunter2"}, set(), PW, "pulumi config set --secret superuserPassword"),
    ("backup-retention-zero", {"backups": {"retentionFull": 0}}, set(), "backups.retentionFull",
     "greater than or equal to 1"),
    ("backup-unknown-compression", {"backups": {"compression": "xz"}}, set(), "backups.compression", "'lz4'"),
    ("backup-schedule-unknown-key", {"backups": {"schedule": {"fullEvery": 1}}}, set(), "backups.schedule.fullEvery",
     "fullEveryHours"),
    ("s3-without-section", {"backups": {"repository": {"type": "s3"}}, "backupS3Key": "a", "backupS3KeySecret": "b"},
     {"backupS3Key", "backupS3KeySecret"}, "backups.repository.s3", "endpoint and bucket"),
    ("s3-without-keys", S3, set(), "backupS3KeySecret", "pulumi config set --secret backupS3KeySecret"),
    ("s3-key-in-plain-text", {**S3, "backupS3Key": "a", "backupS3KeySecret": "b"}, {"backupS3KeySecret"},
     "backupS3Key", "stored encrypted"),
    ("s3-section-with-volume", {"backups": {"repository": {"s3": {"endpoint": "m", "bucket": "bkt"}}}}, set(),
     "backups.repository.s3", "type is 'volume'"),
    ("archive-command-passthrough", {"postgresql": {"parameters": {"archive_command": "cp %p /x"}}}, set(),
     "postgresql.parameters.archive_command", "backups"),
    ("plain-text-app-password", {"appPassword": "x"}, set(), "appPassword", "--secret appPassword"),
    ("two-etcd-members", {"etcd": {"members": 2}}, set(), "etcd.members", "1, 3 or 5"),
    ("subnet-too-small", {"network": {"subnet": "10.0.0.0/29"}}, set(), "network.subnet", "Use a larger prefix"),
    ("public-subnet", {"network": {"subnet": "8.8.8.0/24"}}, set(), "network.subnet", "not a private range"),
    ("managed-parameter", {"postgresql": {"parameters": {"port": 6000}}}, set(), "postgresql.parameters.port",
     "managed by ports.*"),
    ("managed-wal-level", {"postgresql": {"parameters": {"wal_level": "minimal"}}}, set(),
     "postgresql.parameters.wal_level", "remove it from the passthrough"),
    ("bad-setting-name", {"postgresql": {"parameters": {"work mem": "64MB"}}}, set(),
     "postgresql.parameters.work mem", "not a PostgreSQL setting name"),
    ("sync-without-standby", {"replication": {"synchronous": True}, "coordinator": {"members": 1},
                              "workers": {"members": 1}}, set(), "replication.synchronous", "Add members"),
    ("retain-with-generated-passwords", {"storage": {"retainOnDestroy": True}}, set(), "storage.retainOnDestroy",
     "pulumi config set --secret"),
    ("bad-name", {"name": "My_Cluster"}, set(), "name", "should match pattern"),
    ("docker-host-scheme", {"dockerHost": "docker.example.com:2375"}, set(), "dockerHost", "should match pattern"),
    ("remote-docker-on-loopback", {"dockerHost": "ssh://ops@db-host"}, set(), "ports.bindAddress",
     "remote Docker host"),
    ("cell-not-dividing-180", {"citus": {"distribution": {"cellDegrees": 0.035}}}, set(),
     "citus.distribution.cellDegrees", "does not divide 180 evenly"),
    ("cell-zero", {"citus": {"distribution": {"cellDegrees": 0}}}, set(), "citus.distribution.cellDegrees",
     "greater than 0"),
    ("unknown-strategy", {"citus": {"distribution": {"strategy": "region"}}}, set(),
     "citus.distribution.strategy", "'spatial' or 'vehicle'"),
    ("memory-too-small", {"resources": {"database": {"memoryMb": 16}}}, set(), "resources.database.memoryMb",
     "greater than or equal to 64"),
    ("negative-cpus", {"resources": {"etcd": {"memoryMb": 256, "cpus": -1}}}, set(), "resources.etcd.cpus",
     "greater than 0"),
    # Config that would undo the guarantees (issue 12, item 4).
    ("app-user-superuser", {"citus": {"appUser": "postgres"}}, set(), "citus.appUser", "Choose a name of its own"),
    ("app-user-replicator", {"citus": {"appUser": "replicator"}}, set(), "citus.appUser", "already owns"),
    ("app-user-rest-user", {"citus": {"appUser": "patroni"}}, set(), "citus.appUser", "already owns"),
    ("app-user-predefined", {"citus": {"appUser": "pg_monitor"}}, set(), "citus.appUser", "pg_*"),
    ("app-user-citus-internal", {"citus": {"appUser": "citus_internal"}}, set(), "citus.appUser", "citus_*"),
    ("managed-upper-case", {"postgresql": {"parameters": {"SYNCHRONOUS_COMMIT": "off"}}}, set(),
     "postgresql.parameters.synchronous_commit", "managed by replication.synchronous"),
    ("managed-mixed-case-blanks", {"postgresql": {"parameters": {" Hba_File ": "/tmp/hba"}}}, set(),
     "postgresql.parameters.hba_file", "remove it from the passthrough"),
    ("setting-twice", {"postgresql": {"parameters": {"work_mem": "4MB", "WORK_MEM": "8MB"}}}, set(),
     "postgresql.parameters", "set twice"),
    ("md5-passwords", {"postgresql": {"parameters": {"password_encryption": "md5"}}}, set(),
     "postgresql.parameters.password_encryption", "scram-sha-256 is set"),
    ("ssl-off", {"postgresql": {"parameters": {"ssl": False}}}, set(), "postgresql.parameters.ssl", "remove it"),
    ("log-statement-ddl", {"postgresql": {"parameters": {"log_statement": "ddl"}}}, set(),
     "postgresql.parameters.log_statement", "passwords would land in the server log"),
    ("log-statement-all-upper", {"postgresql": {"parameters": {"Log_Statement": " ALL "}}}, set(),
     "postgresql.parameters.log_statement", "Remove it"),
    ("log-every-duration", {"postgresql": {"parameters": {"log_min_duration_statement": 0}}}, set(),
     "postgresql.parameters.log_min_duration_statement", "use a threshold"),
    ("debug-parse-trees", {"postgresql": {"parameters": {"debug_print_parse": "on"}}}, set(),
     "postgresql.parameters.debug_print_parse", "parse trees"),
    # Input hardening (issue 12, item 5).
    ("grid-fewer-cells-than-shards", {"citus": {"shardCount": 4096, "distribution": {"cellDegrees": 5}}}, set(),
     "citus.distribution.cellDegrees", "fewer shards"),
    ("grid-cell-holds-a-city", {"citus": {"distribution": {"cellDegrees": 2}}}, set(),
     "citus.distribution.cellDegrees", "a whole city falls in one cell"),
    ("shared-buffers-over-half-the-memory", {"postgresql": {"parameters": {"shared_buffers": "512MB"}}}, set(),
     "resources.database.memoryMb", "Raise resources.database.memoryMb to at least 1024"),
    ("memory-below-settings", {"resources": {"database": {"memoryMb": 256}},
                               "postgresql": {"parameters": {"maintenance_work_mem": "200MB"}}}, set(),
     "resources.database.memoryMb", "Raise it or lower those postgresql.parameters"),
    ("cpus-below-docker-minimum", {"resources": {"haproxy": {"memoryMb": 128, "cpus": 0.001}}}, set(),
     "resources.haproxy.cpus", "below Docker's minimum of 0.01"),
    ("empty-secret-password", {PW: ""}, {PW}, PW, "use at least 16"),
    ("short-secret-password", {"appPassword": "hunter2"}, {"appPassword"}, "appPassword", "openssl rand"),
    ("docker-tcp-without-tls", {"dockerHost": "tcp://docker.example.com:2375",
                                "ports": {"bindAddress": "0.0.0.0", "allowPublicBind": True}}, set(),
     "dockerHost", "Use ssh://user@host"),
    ("subnet-docker0", {"network": {"subnet": "172.17.5.0/24"}}, set(), "network.subnet", "docker0"),
    ("subnet-docker-pool", {"network": {"subnet": "192.168.10.0/24"}}, set(), "network.subnet",
     "Docker's default address pools"),
]


@pytest.mark.parametrize(("raw", "secret", "key", "fix"), [case[1:] for case in BAD], ids=[c[0] for c in BAD])
def test_bad_config_is_rejected_naming_the_key_and_the_fix(raw: dict, secret: set, key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(raw, secret)
    matching = [p for p in error.value.problems if p.key == key]
    assert matching, f"no problem for {key}; got {[str(p) for p in error.value.problems]}"
    assert any(fix in p.message for p in matching), [p.message for p in matching]
    assert "nothing was created" in str(error.value) and key in str(error.value)


def test_cpu_limits_above_the_docker_hosts_cpus_are_refused() -> None:
    raw = {"resources": {"database": {"memoryMb": 768, "cpus": 4}}}
    with pytest.raises(ConfigError) as error:
        load_config(raw, host_cpus=2)
    assert [p.key for p in error.value.problems] == ["resources.database.cpus"]
    assert "use at most 2" in error.value.problems[0].message
    assert load_config(raw, host_cpus=None).config.resources.database.cpus == 4  # remote host: not known


def test_setting_names_are_canonical_and_safe_values_pass() -> None:
    config = load_config({"postgresql": {"parameters": {" Work_Mem ": "8MB", "log_statement": "none",
                                                        "password_encryption": "scram-sha-256", "ssl": "on"}}}).config
    assert config.postgresql.parameters == {"work_mem": "8MB", "log_statement": "none",
                                            "password_encryption": "scram-sha-256", "ssl": "on"}


def test_there_are_at_least_twenty_distinct_bad_configs() -> None:
    assert len({case[0] for case in BAD}) >= 20


def test_every_problem_is_listed_at_once() -> None:
    raw = {"workers": {"groups": 0, "membres": 2}, "citus": {"shardCount": 0}, PW: "plain-text-but-long-enough"}
    with pytest.raises(ConfigError) as error:
        load_config(raw)
    keys = {p.key for p in error.value.problems}
    assert {"workers.groups", "workers.membres", "citus.shardCount", PW} <= keys
    assert "(4 problems)" in str(error.value)


def test_secret_passwords_and_opt_ins_are_accepted() -> None:
    loaded = load_config(
        {PW: "s3cret-s3cret-s3cret", "replicationPassword": "r" * 16, "storage": {"retainOnDestroy": True},
         "ports": {"bindAddress": "0.0.0.0", "allowPublicBind": True}},
        secret_keys={PW, "replicationPassword"},
    )
    assert loaded.supplied_passwords == {PW, "replicationPassword"}
    assert loaded.config.storage.retain_on_destroy is True


def test_remote_docker_host_with_a_reachable_bind_is_accepted() -> None:
    config = load_config(
        {"dockerHost": "ssh://ops@db-host", "ports": {"bindAddress": "0.0.0.0", "allowPublicBind": True}}
    ).config
    assert config.docker_host == "ssh://ops@db-host"


def test_the_shipped_dev_stack_is_valid() -> None:
    raw, secret = read_stack_file(stack_file("dev"))
    config = load_config(raw, secret).config
    assert (config.coordinator.members, config.workers.groups, config.workers.members) == (2, 3, 2)


def test_stack_file_keys_are_split_by_project_and_encrypted_values_are_secrets(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(
        "config:\n"
        "  citus-cluster:workers: {groups: 2}\n"
        "  citus-cluster:superuserPassword: {secure: v1:abc}\n"
        "  docker:host: unix:///var/run/docker.sock\n"
    )
    values, secret = read_stack_file(path)
    assert values == {"workers": {"groups": 2}, PW: {"secure": "v1:abc"}}
    assert secret == {PW}


@pytest.mark.parametrize(
    ("text", "key", "fix"),
    [
        (None, "Pulumi.missing.yaml", "file not found"),
        ("config: [1, 2\n", "Pulumi.missing.yaml", "not valid YAML"),
        ("config: [1, 2]\n", "Pulumi.missing.yaml", "`config:` mapping"),
        ("config:\n  workers: {groups: 2}\n", "workers", "need a namespace, e.g. citus-cluster:workers"),
    ],
    ids=["missing", "not-yaml", "not-a-mapping", "no-namespace"],
)
def test_unreadable_stack_files_name_the_problem(tmp_path, text: str | None, key: str, fix: str) -> None:  # noqa: ANN001
    path = tmp_path / "Pulumi.missing.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as error:
        read_stack_file(path)
    assert error.value.problems[0].key.endswith(key) and fix in error.value.problems[0].message


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
) + "config:\n  citus-cluster:name: c\n"


@pytest.mark.parametrize(
    ("content", "key", "fix"),
    [
        (b"config:\n  citus-cluster:workers: {groups: yes}\n", "workers.groups", "YAML 1.1 reads as the boolean"),
        (b"config:\n  citus-cluster:ports: {readWrite: 05432}\n", "ports.readWrite", "the octal number 2842"),
        (b"config:\n  citus-cluster:name: on\n", "name", "quote it ('on')"),
        (BOMB.encode(), "Pulumi.x.yaml", "through YAML aliases"),
        ("config:\n  citus-cluster:name: c\n".encode("utf-16"), "Pulumi.x.yaml", "save it as UTF-8"),
        (b"config:\n  citus-cluster:name: caf\xe9\n", "Pulumi.x.yaml", "is not UTF-8 (byte 33"),
        (b"config:\n  citus-cluster:name: " + b"9" * 5000 + b"\n", "Pulumi.x.yaml:2", "limited to 4096"),
        (b"#" * (1 << 20) + b"\n", "Pulumi.x.yaml", "larger than 1024 KiB"),
        (b"config:\n  citus-clustre:workers: {groups: 2}\n", "citus-clustre:workers",
         "did you mean citus-cluster:workers"),
    ],
    ids=["yes-as-number", "octal-port", "on-as-name", "alias-bomb", "utf-16", "latin-1", "huge-value",
         "huge-file", "namespace-typo"],
)
def test_hostile_stack_files_give_a_config_error(tmp_path, content: bytes, key: str, fix: str) -> None:  # noqa: ANN001
    path = tmp_path / "Pulumi.x.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        read_stack_file(path)
    matching = [p for p in error.value.problems if p.key.endswith(key)]
    assert matching, [str(p) for p in error.value.problems]
    assert fix in matching[0].message, matching[0].message


def test_yaml_true_false_and_decimals_are_read_as_written(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text("config:\n  citus-cluster:ports: {readWrite: 6432, allowPublicBind: false}\n"
                    "  citus-cluster:name: 'on'\n")
    assert read_stack_file(path)[0] == {"ports": {"readWrite": 6432, "allowPublicBind": False}, "name": "on"}


def test_other_namespaces_are_left_to_their_providers() -> None:
    values, secret = split_project_keys({"aws:region": "x", "citus-cluster:name": "c"}, is_secret=lambda _v: False)
    assert values == {"name": "c"} and secret == frozenset()
