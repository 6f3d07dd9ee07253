"""Bad stack configs are refused before anything is declared, each problem named by its key and with a fix."""

from __future__ import annotations

from typing import Any

import pytest

from cluster.config import ConfigError, load_config
from cluster.config.sources import read_stack_file, split_project_keys, stack_file

PW = "superuserPassword"

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
]


@pytest.mark.parametrize(("raw", "secret", "key", "fix"), [case[1:] for case in BAD], ids=[c[0] for c in BAD])
def test_bad_config_is_rejected_naming_the_key_and_the_fix(raw: dict, secret: set, key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(raw, secret)
    matching = [p for p in error.value.problems if p.key == key]
    assert matching, f"no problem for {key}; got {[str(p) for p in error.value.problems]}"
    assert any(fix in p.message for p in matching), [p.message for p in matching]
    assert "nothing was created" in str(error.value) and key in str(error.value)


def test_there_are_at_least_twenty_distinct_bad_configs() -> None:
    assert len({case[0] for case in BAD}) >= 20


def test_every_problem_is_listed_at_once() -> None:
    raw = {"workers": {"groups": 0, "membres": 2}, "citus": {"shardCount": 0}, PW: "plain"}
    with pytest.raises(ConfigError) as error:
        load_config(raw)
    keys = {p.key for p in error.value.problems}
    assert {"workers.groups", "workers.membres", "citus.shardCount", PW} <= keys
    assert "(4 problems)" in str(error.value)


def test_secret_passwords_and_opt_ins_are_accepted() -> None:
    loaded = load_config(
        {PW: "s3cret", "replicationPassword": "r", "storage": {"retainOnDestroy": True},
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


def test_other_namespaces_are_left_to_their_providers() -> None:
    values, secret = split_project_keys({"aws:region": "x", "citus-cluster:name": "c"}, is_secret=lambda _v: False)
    assert values == {"name": "c"} and secret == frozenset()
