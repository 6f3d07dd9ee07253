"""The rendered alert rules on a real Prometheus scraping the real cluster: stopping a standby raises
CitusGroupWithoutStandby and CitusMemberDown; killing a worker leader raises CitusLeaderChanged; once the members
are back the member and standby alerts resolve."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cluster.local import processes
from cluster.local.harness import Harness, free_ports
from cluster.render.prometheus import CA_FILE, CLIENT_CERT, CLIENT_KEY, RULES_FILE, SCRAPE_FILE, render_prometheus
from cluster.tls import TlsPaths

pytestmark = [pytest.mark.citus, pytest.mark.slow]


@pytest.fixture
def prometheus(harness: Harness, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus missing (Debian package prometheus, .ci/run installs it)")
    files = render_prometheus(harness.plan)
    config = yaml.safe_load(files[SCRAPE_FILE])
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}  # drill speed, same rules
    (tmp_path / SCRAPE_FILE).write_text(yaml.safe_dump(config))
    (tmp_path / RULES_FILE).write_text(files[RULES_FILE])
    # The TLS files the scrape config names: the cluster CA, and for etcd a certificate of that CA (an etcd
    # member's own, which is good for client auth too).
    etcd_tls = TlsPaths(harness.plan.etcd[0].tls_dir)
    for name, source in ((CA_FILE, harness.ca_file), (CLIENT_CERT, etcd_tls.cert), (CLIENT_KEY, etcd_tls.key)):
        shutil.copyfile(source, tmp_path / name)
    port = free_ports(1)[0]
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / SCRAPE_FILE}", f"--storage.tsdb.path={tmp_path}/db",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        assert processes.wait_for(lambda: _ready(url), 30), (tmp_path / "prometheus.log").read_text()[-2000:]
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def firing(url: str) -> set[tuple[str, str]]:
    """(alert, group or member) of every firing alert."""
    with urllib.request.urlopen(f"{url}/api/v1/alerts", timeout=5) as response:
        alerts = json.loads(response.read())["data"]["alerts"]
    return {(a["labels"]["alertname"], a["labels"].get("member") or a["labels"].get("citus_group", ""))
            for a in alerts if a["state"] == "firing"}


def until(url: str, wanted, timeout: float, what: str) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        now = firing(url)
        if wanted(now):
            return now
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s; firing: {sorted(now)}"
        time.sleep(1)


def test_standby_and_leader_drills_fire_their_alerts_and_recover(harness: Harness, prometheus: str) -> None:
    until(prometheus, lambda f: not any(name != "CitusLeaderChanged" for name, _ in f), 60, "a quiet start")
    standby = next(m.name for m in harness.plan.groups[2] if m.name != harness.leader(2))
    harness.stop_member(standby)
    found = until(prometheus, lambda f: ("CitusGroupWithoutStandby", "2") in f and ("CitusMemberDown", standby) in f,
                  90, "the standby alerts")
    assert ("CitusGroupWithoutLeader", "2") not in found
    harness.start_member(standby)
    harness.wait_member(standby, "replica")
    until(prometheus, lambda f: not {("CitusGroupWithoutStandby", "2"), ("CitusMemberDown", standby)} & f, 90,
          "the standby alerts to resolve")

    victim = harness.leader(1)
    harness.kill_member(victim)
    until(prometheus, lambda f: ("CitusLeaderChanged", "1") in f and ("CitusMemberDown", victim) in f, 90,
          "the leader-change alert")
    harness.start_member(victim)
    harness.wait_member(victim, "replica")
    found = until(prometheus, lambda f: ("CitusMemberDown", victim) not in f and ("CitusGroupWithoutStandby", "1")
                  not in f, 90, "the member alert to resolve")
    assert ("CitusLeaderChanged", "1") in found  # stays for its window, then resolves by itself
