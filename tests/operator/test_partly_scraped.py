"""A deployment whose ready pods Prometheus only partly scrapes: the demand read is that of the pods scraped,
so the real operator process holds its replicas (MetricsAvailable=True, PartlyScraped) instead of scaling down
on it, and scales down once every ready pod is scraped again."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from foresail.demo.prometheus import free_port
from tests.helpers import wait_for
from tests.operator.advisory import decisions
from tests.operator.conftest import LLMD
from tests.operator.exporters import pods_in_flight
from tests.operator.test_capacity_learning import SPEC
from tests.operator.test_scale_down import PODS, SPECS, ready_pods, running_operator


def metrics_condition(cluster) -> dict:
    status = cluster.kube.get(f"{LLMD.format(ns='default')}/tiny").get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "MetricsAvailable"), {})


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (make install)")
def test_no_scale_down_while_a_ready_pod_is_not_scraped(cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FORESAIL_COLLECT_PERIOD", "1")
    monkeypatch.setenv("FORESAIL_RATE_WINDOW", "5s")
    with running_operator(cluster, tmp_path, SPECS["reactive"]) as (operator, prometheus):
        wait_for(lambda: cluster.kube.get(f"{LLMD.format(ns='default')}/tiny").get("status"), what="a status")
        cluster.kube.merge(f"{LLMD.format(ns='default')}/tiny/scale", {"spec": {"replicas": 3}})
        pods = wait_for(lambda: len(p := ready_pods(cluster)) == 3 and p, timeout=30, what="3 ready pods")
        names = [p["metadata"]["name"] for p in pods]
        with pods_in_flight(cluster.kube, "default", dict.fromkeys(names, 0), owner="tiny") as targets:
            # two pods scraped, idle; the third's address refuses Prometheus
            dead = (f"127.0.0.1:{free_port()}", {**targets[names[2]][1]})
            prometheus.write_targets([targets[n] for n in names[:2]] + [dead])
            condition = wait_for(lambda: (c := metrics_condition(cluster)).get("reason") == "PartlyScraped" and c,
                                 timeout=30, what="MetricsAvailable PartlyScraped")
            assert "only 2 of the 3 ready pods' metrics are scraped" in condition["message"]
            time.sleep(5)  # a few decisions on no demand, every 5 s
            assert len(cluster.kube.get(PODS)["items"]) == 3
            prometheus.write_targets([targets[n] for n in names])
            wait_for(lambda: len(cluster.kube.get(PODS)["items"]) == 1, timeout=60, what="one pod left")
            prometheus.write_targets([])
    log = operator.text()
    assert "only 2 of the 3 ready pods' metrics are scraped" in log and "every ready pod is scraped again" in log
    # the line names its object, as kopf's per-object lines do with log_prefix
    assert "[default/tiny] default/tiny: only 2 of the 3" in log


@pytest.mark.parametrize(("scraped", "learned"), [("2", False), ("3", True), (None, True)])
async def test_a_partly_scraped_read_teaches_no_capacity(scraped: str | None, learned: bool) -> None:
    """Two of three ready pods scraped, their KV caches 96 % full: the 1.5 req/s read is theirs only, not the
    deployment's, so the capacity per replica keeps the spec's figure (a Prometheus whose targets lack the
    labels answers no `up` series: nothing is held)."""
    loop, _ = await decisions(SPEC, n=6, values={"kv_cache": "0.96"}, scraped=scraped)
    capacity, metrics = loop.view["fields"]["capacity"], loop.view["conditions"]["MetricsAvailable"]
    assert (capacity["perReplica"] < 1.0) is learned, capacity
    assert (metrics[1] == "PartlyScraped") is not learned, metrics
