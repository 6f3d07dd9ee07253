"""pgBackRest's files and Patroni's backup settings, rendered from the plan: one stanza per Citus group."""

from __future__ import annotations

import configparser

import yaml

from cluster.config import load_config
from cluster.plan import build_plan
from cluster.render import render_files, render_patroni
from cluster.render.pgbackrest import bootstrap_from_backup, render_pgbackrest, stanza


def parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def test_every_member_gets_its_groups_stanza_pointing_at_its_own_data_dir() -> None:
    plan = build_plan(load_config({"backups": {"retentionFull": 3, "compression": "zst"}}).config)
    stanzas = set()
    for member in plan.members:
        conf = parse(render_pgbackrest(plan, member))
        assert conf.sections() == ["global", stanza(plan, member.group)]
        assert conf["global"]["repo1-path"] == "/var/lib/pgbackrest/repo"
        assert conf["global"]["repo1-retention-full"] == "3" and conf["global"]["compress-type"] == "zst"
        assert conf[stanza(plan, member.group)]["pg1-path"] == member.data_dir
        stanzas.add(stanza(plan, member.group))
    assert len(stanzas) == len(plan.groups)  # one per group, whichever member is primary


def test_patroni_archives_and_creates_replicas_from_the_repository_first() -> None:
    plan = build_plan(load_config({}).config)
    member = plan.groups[1][1]
    doc = yaml.safe_load(render_patroni(plan, member))
    parameters = doc["postgresql"]["parameters"]
    assert parameters["archive_mode"] == "on"
    assert f"--stanza={stanza(plan, 1)}" in parameters["archive_command"]
    assert parameters["archive_command"].endswith('archive-push "%p"')
    assert doc["postgresql"]["create_replica_methods"] == ["pgbackrest", "basebackup"]
    assert "restore" in doc["postgresql"]["pgbackrest"]["command"]
    assert "archive-get" in doc["postgresql"]["recovery_conf"]["restore_command"]
    assert f"patroni/{member.name}/pgbackrest.conf" in render_files(plan)


def test_backups_off_means_no_archive_and_no_repository_method() -> None:
    plan = build_plan(load_config({"backups": {"enabled": False}}).config)
    doc = yaml.safe_load(render_patroni(plan, plan.members[0]))
    assert "archive_command" not in doc["postgresql"]["parameters"]
    assert "create_replica_methods" not in doc["postgresql"]
    assert not [f for f in render_files(plan) if f.endswith("pgbackrest.conf")]


def test_bootstrap_from_backup_recovers_to_the_named_point_from_the_source_repository() -> None:
    plan = build_plan(load_config({}).config)
    section = bootstrap_from_backup(plan, plan.members[0], "/old/repo", "before-upgrade")
    method = section["pgbackrest"]
    assert section["method"] == "pgbackrest" and method["no_params"] is True
    assert "--repo1-path=/old/repo" in method["command"] and "--target=before-upgrade" in method["command"]
    assert method["recovery_conf"]["recovery_target_name"] == "before-upgrade"
    assert method["recovery_conf"]["recovery_target_action"] == "promote"
    assert "--repo1-path=/old/repo" in method["recovery_conf"]["restore_command"]
