"""The one place that writes an inference Deployment's replica count, and picks the pods a scale-down removes.

Kubernetes removes pods in the ReplicaSet controller's order: not ready first, then the lowest
`controller.kubernetes.io/pod-deletion-cost`, then the most recently ready. Left alone, it stops replicas in
the middle of their generations while idle ones stay. Before a scale-down the operator reads each pod's
requests in flight (running and queued) from the pod's own /metrics, at that moment, and writes them as its
deletion cost, so the idlest pods go first and fewer requests wait out a drain. Prometheus's figures would
be a scrape interval old, longer than most requests last (bench/scale_down.py measures both).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Iterable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from foresail_operator.kube import ApiError, KubeClient, path_for
from foresail_operator.runtimes import RUNTIMES
from foresail_operator.status import DELETION_COST, PodSummary

MAX_COST = 2**31 - 1  # the annotation is an int32
READ_TIMEOUT_S = 2.0  # per pod; the reads run at once, so a scale-down waits this long at most


def requests_in(text: str, names: set[str]) -> float | None:
    """The sum of the samples named ``names`` in a Prometheus text exposition; None when there are none
    or the text cannot be parsed."""
    try:
        values = [s.value for family in text_string_to_metric_families(text) for s in family.samples
                  if s.name in names]
    except ValueError:
        return None
    return sum(values) if values else None


async def in_flight(pods: Iterable[PodSummary], runtime: str) -> dict[str, float]:
    """The requests each ready pod holds now (running and queued), from its own /metrics; a pod that is not
    ready, does not answer in time or reports no such metric is left out."""
    names = {n for s in ("running", "waiting") if (n := RUNTIMES[runtime].metrics.get(s))}

    async def read(session: aiohttp.ClientSession, url: str) -> float | None:
        try:
            async with session.get(url) as rsp:
                text = await rsp.text() if rsp.status == 200 else ""
        except (aiohttp.ClientError, asyncio.TimeoutError, UnicodeDecodeError):
            return None
        return await asyncio.to_thread(requests_in, text, names) if text else None

    readable = [p for p in pods if p.metrics_url and p.ready_since is not None]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=READ_TIMEOUT_S)) as session:
        figures = await asyncio.gather(*(read(session, p.metrics_url or "") for p in readable))
    return {p.name: value for p, value in zip(readable, figures, strict=True) if value is not None}


def deletion_costs(pods: Iterable[PodSummary], in_flight: dict[str, float]) -> dict[str, str | None]:
    """The annotation values to write before a scale-down, for the pods whose value changes: each pod's
    requests in flight; for a ready pod without a figure the highest cost (it may be busy: the pods known
    idle go first); none for a pod not ready (the ReplicaSet controller removes those first anyway)."""
    out: dict[str, str | None] = {}
    for pod in pods:
        cost = str(min(MAX_COST, round(in_flight[pod.name]))) if pod.name in in_flight else \
            str(MAX_COST) if pod.ready_since is not None else None
        if cost != pod.deletion_cost:
            out[pod.name] = cost
    return out


async def mark_idlest(client: KubeClient, key: tuple[str, str], runtime: str, pods: Iterable[PodSummary],
                      logger: logging.Logger) -> None:
    """Before a scale-down: write each pod's requests in flight as its deletion cost. A ready pod that cannot
    be read is logged and ranked last (it may be busy); at a pod that cannot be annotated the marking stops,
    logged; the scale-down goes ahead either way. Pods
    already terminating (an earlier scale-down's, draining) are not the ReplicaSet's to choose: left alone."""
    ns, name = key
    pods = [p for p in pods if not p.terminating]
    figures = await in_flight(pods, runtime)
    unread = sorted(p.name for p in pods if p.ready_since is not None and p.name not in figures)
    if unread:
        logger.warning("%s/%s: requests in flight unknown for %s (their /metrics could not be read); those pods "
                       "are ranked last, in Kubernetes' own order among themselves", ns, name, ", ".join(unread))
    for pod, cost in deletion_costs(pods, figures).items():
        try:
            await client.merge_patch(path_for("v1", "pods", ns, pod), {"metadata": {"annotations": {
                DELETION_COST: cost}}})
        except ApiError as exc:
            if exc.status != 404:  # a pod gone meanwhile needs no cost
                logger.warning("%s/%s: cannot mark pod %s for the scale-down (%s); Kubernetes picks the pods "
                               "to remove in its own order", ns, name, pod, exc)
                return
    if figures:
        busy = ", ".join(f"{pod} {figures[pod]:g}" for pod in sorted(figures, key=figures.__getitem__))
        logger.info("%s/%s: the scale-down removes the pods with the fewest requests in flight first (%s)",
                    ns, name, busy)


async def set_replicas(client: KubeClient, key: tuple[str, str], current: int, target: int, runtime: str,
                       pods: Iterable[PodSummary], logger: logging.Logger) -> None:
    """Set the Deployment's replicas through its scale subresource (no pod template change); before a
    scale-down that leaves some, mark the idlest pods to go first (``mark_idlest``)."""
    if 0 < target < current:
        await mark_idlest(client, key, runtime, pods, logger)
    await client.merge_patch(path_for("apps/v1", "deployments", *key, "scale"), {"spec": {"replicas": int(target)}})
