"""Prometheus files for the cluster: a scrape config (every member's Patroni /metrics, every etcd member's
/metrics) and alert rules on Patroni's metrics. Pure: plan in, YAML out (`python -m cluster render` writes them
under prometheus/).

Patroni labels its metrics with scope and member name only, so the scrape config adds what the rules need per
target: `citus_group`, `member`, and `has_standby` (the group was planned with more than one member).

Every endpoint speaks verified TLS only: Patroni's REST API over HTTPS checked against the cluster CA, etcd also
wanting a client certificate of that CA. The files are named relative to prometheus.yml: put the CA there
(`python -m cluster ca --out prometheus/ca.crt`) and, for etcd, a certificate and key the CA issued.
"""

from __future__ import annotations

from typing import Any

import yaml

from cluster.plan import Plan
from cluster.render.patroni import MAXIMUM_LAG_ON_FAILOVER

RULES_FILE = "alerts.yml"
CA_FILE = "ca.crt"
CLIENT_CERT, CLIENT_KEY = "client.crt", "client.key"  # etcd's client-cert-auth covers /metrics too
SCRAPE_FILE = "prometheus.yml"
PATRONI_JOB = "patroni"
ETCD_JOB = "etcd"
LEADER_CHANGE_WINDOW = "5m"  # a leader change stays visible this long, then the alert resolves by itself


def scrape_config(plan: Plan) -> dict[str, Any]:
    patroni = [
        {
            "targets": [m.api.address],
            "labels": {"citus_group": str(m.group), "member": m.name,
                       "has_standby": str(len(plan.groups[m.group]) > 1).lower()},
        }
        for m in plan.members
    ]
    return {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [RULES_FILE],
        "scrape_configs": [
            {"job_name": PATRONI_JOB, "metrics_path": "/metrics", "scheme": "https",
             "tls_config": {"ca_file": CA_FILE}, "static_configs": patroni},
            {"job_name": ETCD_JOB, "scheme": "https",
             "tls_config": {"ca_file": CA_FILE, "cert_file": CLIENT_CERT, "key_file": CLIENT_KEY},
             "static_configs": [{"targets": [e.client.address], "labels": {"member": e.name}} for e in plan.etcd]},
        ],
    }


def alert_rules(plan: Plan) -> dict[str, Any]:
    job = f'job="{PATRONI_JOB}"'
    rules = [
        _alert("CitusMemberDown", f"up{{{job}}} == 0", "30s", "critical",
               "{{ $labels.member }} (group {{ $labels.citus_group }}) does not answer: its Patroni /metrics is "
               "unreachable (member stopped, crashed or cut off)"),
        _alert("CitusGroupWithoutLeader", f"max by (citus_group) (patroni_primary{{{job}}}) < 1", "30s", "critical",
               "group {{ $labels.citus_group }} has no leader: its writes fail until Patroni promotes a standby"),
        _alert("CitusLeaderChanged",
               f"sum by (citus_group) (changes(patroni_primary{{{job}}}[{LEADER_CHANGE_WINDOW}])) > 0", "0s",
               "warning", f"group {{{{ $labels.citus_group }}}} changed leader in the last {LEADER_CHANGE_WINDOW} "
               "(failover or switchover); check why (`python -m cluster status`)"),
        _alert("CitusGroupWithoutStandby",
               f'max by (citus_group) (patroni_primary{{{job},has_standby="true"}}) == 1 unless on (citus_group) '
               f"max by (citus_group) (patroni_postgres_streaming{{{job}}}) == 1", "30s", "critical",
               "group {{ $labels.citus_group }} has no streaming standby: one more failure loses it, and new "
               "writes have no synchronous copy"),
        _alert("CitusStandbyLag",
               f"(max by (citus_group) (patroni_xlog_location{{{job}}}) - on (citus_group) group_right () "
               f"(patroni_xlog_replayed_location{{{job}}} > 0)) > {MAXIMUM_LAG_ON_FAILOVER}", "1m", "warning",
               "{{ $labels.member }} replays {{ $value | humanize1024 }}B behind its leader, more than "
               "failover allows (maximum_lag_on_failover): Patroni would not promote it"),
        _alert("CitusMaintenanceMode", f"patroni_is_paused{{{job}}} == 1", "10m", "warning",
               "Patroni is paused on {{ $labels.member }}: no automatic failover"),
    ]
    return {"groups": [{"name": f"citus-cluster-{plan.scope}", "rules": rules}]}


def _alert(name: str, expr: str, after: str, severity: str, summary: str) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": after, "labels": {"severity": severity},
            "annotations": {"summary": summary}}


def render_prometheus(plan: Plan) -> dict[str, str]:
    """The two files, by name: prometheus.yml and the rules it loads."""
    return {SCRAPE_FILE: _yaml(scrape_config(plan)), RULES_FILE: _yaml(alert_rules(plan))}


def _yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=1000)
