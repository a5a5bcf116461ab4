"""kopf handlers: thin wiring from Kubernetes events to the reconciler.

Importing this module registers the handlers with kopf. Per-object work lives in reconciler.py;
the pod plan in plan.py; status and conditions in status.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import socket
import time
from typing import Any, Iterator

import kopf
import prometheus_client

from foresail_operator import GROUP, PLURAL, VERSION, reconciler, telemetry
from foresail_operator.activation import requested_at
from foresail_operator.autoscaler import Loop, backfill, step
from foresail_operator.collector import Collector
from foresail_operator.flags import kube_login
from foresail_operator.kube import ApiError, KubeClient, path_for
from foresail_operator.metrics import PrometheusSource, duration_seconds
from foresail_operator.plan import OWNER_LABEL, selector_string
from foresail_operator.reconciler import llmd_path, out_of_plan, reconcile, refresh_status
from foresail_operator.runtimes import runtime_for
from foresail_operator.spec import SpecError, parse_spec
from foresail_operator.status import PodSummary, pod_warnings

OWNED = {OWNER_LABEL: kopf.PRESENT}
OWNED_KINDS = (("v1", "services"), ("apps/v1", "deployments"), ("policy/v1", "poddisruptionbudgets"))
INVALID_SPEC_RECHECK_S = 5.0  # how often a decision loop looks again at a spec it cannot act on
# how often the owned objects the watch caches are read back: kopf tells no deletion made while a watch was down
VANISHED_CHECK_S = 60.0
_locks: dict[tuple[str, str], asyncio.Lock] = {}  # one status refresh at a time per object
_reconciling: dict[tuple[str, str], asyncio.Lock] = {}  # one reconcile at a time per object
# pod uid -> when it was first seen ready (owned_pods); None: not known (first seen ready, or restarted by then)
_first_ready: dict[str, float | None] = {}
_unready: set[str] = set()  # the uids of the pods seen not ready yet (owned_pods)
_warned: set[str] = set()  # keys ("uid/...") of the pod warnings already told (status.pod_warnings, _warn_once)
_vanished_checked: dict[tuple[str, str], float] = {}  # when each object's owned objects were last read back
# per object: the object its last status write answered (_refresh), and the resourceVersions that write and those
# before it (since the index last caught up) were computed over: while the index shows one of them, it lags behind
_written: dict[tuple[str, str], tuple[frozenset[str], dict]] = {}
# per object: the uids of the pods owned_pods held when they were last listed (_pods), and of those of them the LIST
# did not return
_pods_listed: dict[tuple[str, str], tuple[frozenset[str], frozenset[str]]] = {}


class ApiBackoffs:
    """kopf's waits before retrying a failed API request: 1, 2, 5, 10 s, then 30 s for ever, afresh for each request.
    A finite list would stop the operator (exit 1) once an API outage outlasts it."""

    def __iter__(self) -> Iterator[float]:
        return itertools.chain((1, 2, 5, 10), itertools.repeat(30))


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Operator-wide settings: annotations for kopf's bookkeeping, retries, event level."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="foresail.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="foresail.dev", key="last-handled-configuration")
    settings.posting.level = logging.INFO
    settings.networking.error_backoffs = ApiBackoffs()
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.peering.mandatory = False


@kopf.on.startup()
async def start_collector(memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    """Serve the operator's own /metrics, and start reading Prometheus. A port taken since the command checked it
    (cli._check_free) stops the operator: kopf would retry the startup for ever, the operator never ready."""
    config = memo.config
    if config.metrics_port:
        # on "::", IPv4 too (Linux's net.ipv6.bindv6only is off by default); "0.0.0.0" where the host has no IPv6
        address = "::" if socket.has_dualstack_ipv6() else "0.0.0.0"
        try:
            prometheus_client.start_http_server(config.metrics_port, addr=address)
        except OSError as exc:
            raise kopf.PermanentError(f"cannot serve /metrics on port {config.metrics_port}: {exc.strerror}") from exc
        logger.info("serving the operator's metrics on :%d/metrics", config.metrics_port)
    source = (PrometheusSource(config.prometheus_url, config.prometheus_token, window=config.rate_window,
                               token_file=config.prometheus_token_file, ca_file=config.prometheus_ca_file,
                               headers=config.prometheus_headers)
              if config.prometheus_url else None)
    memo.collector = Collector(source, period_s=config.collect_period_s)
    memo.loops = {}
    memo.failures = {}  # (namespace, name) -> (reason, message) of the last failed reconcile
    memo.owned = {"services": {}, "poddisruptionbudgets": {}}  # plural -> (namespace, owner) -> object (on_owned)
    memo.collector_task = asyncio.create_task(memo.collector.run(logger))


@kopf.on.login()
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """Log in as kubectl does (``kube_login``: the kubeconfig where one is set, else the pod's service account);
    share it with our client, which reads the service account's token again as the kubelet rotates it."""
    info, token_file = kube_login(**kwargs)
    if info is not None:
        memo.client = KubeClient(info, token_file=token_file)
    return info


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    """Close the API connection pool."""
    if getattr(memo, "collector_task", None) is not None:
        memo.collector_task.cancel()
    if getattr(memo, "client", None) is not None:
        await memo.client.close()


@kopf.index(GROUP, VERSION, PLURAL)
def llmdeployments(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict:
    """Every LLMDeployment by (namespace, name)."""
    return {(namespace, name): dict(body)}


@kopf.index("apps", "v1", "deployments", labels=OWNED)
def owned_deployments(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict:
    """Owned Deployments by (namespace, owner name)."""
    return {(namespace, labels[OWNER_LABEL]): dict(body)}


@kopf.index("", "v1", "pods", labels=OWNED)
def owned_pods(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict:
    """Summaries of owned pods by (namespace, owner name), with when each was first seen ready (its cold start's
    end: the Ready condition tells only the last time it became ready). Not known of a pod first seen ready (by an
    operator started since, or created while a watch was down: it may have gone NotReady and back since), nor of
    one whose container restarted before it was first seen ready."""
    summary, uid = PodSummary.of(body), body.get("metadata", {}).get("uid", "")
    if uid not in _first_ready:
        if summary.ready_since is None:
            _unready.add(uid)
        else:
            _first_ready[uid] = summary.ready_since if uid in _unready and not summary.restarted else None
            _unready.discard(uid)
    return {(namespace, labels[OWNER_LABEL]): dataclasses.replace(summary, first_ready=_first_ready.get(uid),
                                                                  watched=True)}


def _first(index: kopf.Index, key: tuple[str, str]) -> Any:
    store = index.get(key)
    return next(iter(store), None) if store else None


def _deployment(owned_deployments: kopf.Index, key: tuple[str, str]) -> dict | None:
    """The owned Deployment as last seen: of those the index holds under ``key`` named like the owner, the last one
    first seen. kopf keeps a Deployment deleted while a watch was down (listing again after a 410 Gone, it sends no
    DELETED): once recreated (``_vanished``), the new one comes after it."""
    named = [d for d in owned_deployments.get(key, ()) if d["metadata"]["name"] == key[1]]
    return named[-1] if named else None


def _forget_pod(uid: str) -> None:
    """Drop what owned_pods and _warn_once keep for a pod that is gone."""
    _first_ready.pop(uid, None)
    _unready.discard(uid)
    _warned.difference_update([k for k in _warned if k.startswith(f"{uid}/")])


async def _pods(client: KubeClient, owned_pods: kopf.Index, key: tuple[str, str],
                deployment: dict | None) -> list[PodSummary]:
    """The owned pods as last seen, less those a LIST found gone: kopf keeps a pod deleted while a watch was down
    (after a 410 Gone it lists again, but sends no DELETED). They are listed where the index holds more pods than
    the Deployment has (status.replicas), once for each set of pods it holds; no API call while it holds no more."""
    listed, gone = _pods_listed.get(key, (frozenset(), frozenset()))
    pods = [p for p in owned_pods.get(key, ()) if p.uid not in gone]
    held = frozenset(p.uid for p in pods)
    if len(pods) <= int(((deployment or {}).get("status") or {}).get("replicas") or 0) or held == listed:
        return pods
    try:
        items = (await client.request("GET", path_for("v1", "pods", key[0]),
                                      params={"labelSelector": selector_string(key[1])})).get("items") or []
    except ApiError:  # listed at the next call
        return pods
    there = {(item.get("metadata") or {}).get("uid", "") for item in items}
    gone = _pods_listed.get(key, (listed, gone))[1]  # read again: another call may have listed meanwhile
    _pods_listed[key] = (held, gone | (held - there))
    for uid in held - there:
        _forget_pod(uid)
    return [p for p in pods if p.uid in there]


def _live(llmdeployments: kopf.Index, key: tuple[str, str]) -> dict | None:
    """The LLMDeployment as last seen, None once it is deleted or being deleted: from then on nothing is kept for it
    (`forget` drops what was), also by a handler still running since before."""
    body = _first(llmdeployments, key)
    return None if body is None or body["metadata"].get("deletionTimestamp") else body


async def _refresh(memo: kopf.Memo, key: tuple[str, str], llmdeployments: kopf.Index,
                   owned_deployments: kopf.Index, owned_pods: kopf.Index,
                   body: dict | None = None, deployment: dict | None = None) -> None:
    """Recompute one LLMDeployment's status from the indexes, or the `body` and `deployment` given (one at a time
    per object), over the status this process last wrote where the index has not seen that write yet: the
    refresh before may have written it while this one waited (else it is written again, and its Degraded or
    Recovered Event posted again)."""
    given = body
    body = given or _first(llmdeployments, key)
    if body is None or body["metadata"].get("deletionTimestamp"):  # no lock kept for a deleted one (forget)
        return
    async with _locks.setdefault(key, asyncio.Lock()):
        body = given or _first(llmdeployments, key) or body
        over, written = _written.get(key, (frozenset(), None))
        if written is not None and _version(body) in over:
            body = written
        else:
            over = frozenset()
        loop = memo.loops.get(key)
        failure = memo.failures.get(key)
        deployment = deployment or _deployment(owned_deployments, key)
        patched = await refresh_status(memo.client, body, deployment,
                                       await _pods(memo.client, owned_pods, key, deployment),
                                       extra_problems=[failure] if failure else None,
                                       autoscaler=loop.view if loop is not None else None, config=memo.config)
        if patched is not None and _live(llmdeployments, key) is not None:
            _written[key] = (over | {_version(body)}, patched)


def _version(obj: dict) -> str:
    return str(obj["metadata"].get("resourceVersion") or "")


async def _restore(memo: kopf.Memo, key: tuple[str, str], logger: logging.Logger, llmdeployments: kopf.Index) -> None:
    """Reconcile from the LLMDeployment as stored now, to put back an owned object deleted or changed outside the
    operator; a failure is kept for the status until a reconcile succeeds."""
    if _live(llmdeployments, key) is None:
        return
    async with _reconciling.setdefault(key, asyncio.Lock()):
        try:
            owner = await memo.client.get(llmd_path(*key))
            if owner is None or owner["metadata"].get("deletionTimestamp"):
                return
            await reconcile(memo.client, memo.config, owner, logger)
        except SpecError:  # reported by on_llmdeployment (InvalidSpec)
            return
        except ApiError as exc:
            if _live(llmdeployments, key) is not None:
                memo.failures[key] = ("ReconcileFailed", f"cannot apply the spec: {exc.message}")
            logger.warning("cannot put back the objects of %s/%s: %s", *key, exc.message)
        else:
            memo.failures.pop(key, None)


async def _restore_if_astray(memo: kopf.Memo, key: tuple[str, str], logger: logging.Logger,
                             llmdeployments: kopf.Index, owned_deployments: kopf.Index) -> None:
    """_restore where an owned object (as last seen) is missing or strayed from the plan, or (read back every
    ``VANISHED_CHECK_S``) is gone; no other API call while all is in order."""
    body = _live(llmdeployments, key)
    if body is None:
        return
    owned = memo.owned
    live = (owned["services"].get(key), _deployment(owned_deployments, key), owned["poddisruptionbudgets"].get(key))
    # the first read back a period after the first look (the watch has just listed them); timed before any await
    now = time.monotonic()
    due = now - _vanished_checked.setdefault(key, now) >= VANISHED_CHECK_S
    if due:
        _vanished_checked[key] = now
    try:
        astray = await out_of_plan(memo.client, memo.config, body, live)
        if not astray and due:
            astray = await _vanished(memo.client, live)
    except (ApiError, SpecError):  # reported by on_llmdeployment
        return
    if astray:
        await _restore(memo, key, logger, llmdeployments)


async def _vanished(client: KubeClient, live: tuple[dict | None, ...]) -> bool:
    """Whether an owned object as last seen is gone: deleted while a watch was down, which kopf never tells (after
    a 410 Gone it lists again, but sends no DELETED for what went meanwhile). One GET per object."""
    for (api_version, plural), obj in zip(OWNED_KINDS, live, strict=True):
        if obj is not None and await client.get(
                path_for(api_version, plural, obj["metadata"]["namespace"], obj["metadata"]["name"])) is None:
            return True
    return False


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def on_llmdeployment(body: kopf.Body, reason: str, diff: kopf.Diff, old: Any, new: Any, name: str,
                           namespace: str, logger: logging.Logger, memo: kopf.Memo, llmdeployments: kopf.Index,
                           owned_deployments: kopf.Index, owned_pods: kopf.Index, **_: Any) -> None:
    """Create or update the owned Deployment, Service and PodDisruptionBudget, then the status."""
    manual, wake = None, False
    if reason == "update":
        manual = next((value for _op, field, _old, value in diff if field == ("spec", "replicas")), None)
        wake = requested_at(new or {}) != requested_at(old or {})  # the activator stamped it anew
    raw = dict(body)
    key = (namespace, name)
    if manual is not None and key in memo.loops:  # the decision loop holds it from now (autoscaler.step)
        memo.loops[key].manual = (manual, time.time())
    try:
        async with _reconciling.setdefault(key, asyncio.Lock()):
            pods = await _pods(memo.client, owned_pods, key, _deployment(owned_deployments, key))
            live = await reconcile(memo.client, memo.config, raw, logger, manual_replicas=manual, wake=wake,
                                   pods=pods)
    except SpecError as exc:
        memo.failures[key] = ("InvalidSpec", str(exc))
        # a failed status write raises, for kopf to retry: the decision loop does not refresh an invalid spec's status
        await _refresh(memo, key, llmdeployments, owned_deployments, owned_pods, body=raw)
        raise kopf.PermanentError(str(exc)) from exc
    except ApiError as exc:
        # Kept until a reconcile succeeds, so that no status refresh reports "no problem" meanwhile.
        memo.failures[key] = ("ReconcileFailed", f"cannot apply the spec: {exc.message}")
        await _refresh_or_warn(memo, key, llmdeployments, owned_deployments, owned_pods, logger, body=raw)
        raise kopf.TemporaryError(memo.failures[key][1], delay=30) from exc
    memo.failures.pop(key, None)
    await _refresh_or_warn(memo, key, llmdeployments, owned_deployments, owned_pods, logger, body=raw,
                           deployment=live)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def forget(name: str, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    """Drop what the handlers and the reconciler keep for a deleted LLMDeployment (its locks, last failure, and the
    fields the API server leaves out of its objects)."""
    reconciler.forget(namespace, name)
    _locks.pop((namespace, name), None)
    _reconciling.pop((namespace, name), None)
    _vanished_checked.pop((namespace, name), None)
    _pods_listed.pop((namespace, name), None)
    _written.pop((namespace, name), None)
    memo.failures.pop((namespace, name), None)


async def _refresh_or_warn(memo: kopf.Memo, key: tuple[str, str], llmdeployments: kopf.Index,
                           owned_deployments: kopf.Index, owned_pods: kopf.Index, logger: logging.Logger,
                           body: dict | None = None, deployment: dict | None = None) -> None:
    """_refresh from a handler or a timer: an API error is one warning line (the next event, timer or decision
    refreshes the status), not a traceback, nor a reconcile retried or failed for it."""
    try:
        await _refresh(memo, key, llmdeployments, owned_deployments, owned_pods, body, deployment)
    except ApiError as exc:
        logger.warning("cannot refresh the status of %s/%s: %s", *key, exc.message)


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
async def on_deployment(type: str, namespace: str, labels: kopf.Labels, logger: logging.Logger,
                        memo: kopf.Memo, llmdeployments: kopf.Index, owned_deployments: kopf.Index,
                        owned_pods: kopf.Index, **_: Any) -> None:
    """Mirror the Deployment into the owner's status; recreate it if someone deleted it."""
    key = (namespace, labels[OWNER_LABEL])
    if _live(llmdeployments, key) is None:
        return
    if type == "DELETED":
        logger.info("Deployment %s was deleted; recreating it", key[1])
        await _restore(memo, key, logger, llmdeployments)
    await _refresh_or_warn(memo, key, llmdeployments, owned_deployments, owned_pods, logger)


@kopf.on.event("", "v1", "services", labels=OWNED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=OWNED)
async def on_owned(type: str | None, body: kopf.Body, resource: kopf.Resource, namespace: str, labels: kopf.Labels,
                   logger: logging.Logger, memo: kopf.Memo, llmdeployments: kopf.Index, **_: Any) -> None:
    """Keep the owned Services and PodDisruptionBudgets as last seen in memo.owned (not kopf indexes, which would
    hold every handler while they cannot be listed: a chart's RBAC older than the image); recreate one someone
    deleted (one the spec disables stays deleted)."""
    key = (namespace, labels[OWNER_LABEL])
    seen = memo.owned[resource.plural]
    if type != "DELETED":
        seen[key] = dict(body)
        return
    seen.pop(key, None)
    if _live(llmdeployments, key) is not None:
        logger.info("%s %s was deleted; reconciling", resource.kind, key[1])
        await _restore(memo, key, logger, llmdeployments)


@kopf.on.event("", "v1", "pods", labels=OWNED)
async def on_pod(type: str | None, body: kopf.Body, namespace: str, labels: kopf.Labels, logger: logging.Logger,
                 memo: kopf.Memo, llmdeployments: kopf.Index, owned_deployments: kopf.Index, owned_pods: kopf.Index,
                 **_: Any) -> None:
    """Pods carry readiness, cold starts and start-up failures into the owner's status, and evictions and
    containers killed for memory into a Warning Event on the owner, once each."""
    key = (namespace, labels[OWNER_LABEL])
    if type == "DELETED":
        _forget_pod(body.get("metadata", {}).get("uid", ""))
    _warn_once(type, body, _first(llmdeployments, key), logger)
    await _refresh_or_warn(memo, key, llmdeployments, owned_deployments, owned_pods, logger)


def _warn_once(type_: str | None, pod: kopf.Body, owner: dict | None, logger: logging.Logger) -> None:
    """A Warning Event on ``owner`` for each of ``pod_warnings`` not told yet. What the first listing shows
    (at start, after a restart) counts as told: it happened before this operator watched. A pod gone is
    forgotten by ``_forget_pod``."""
    if type_ == "DELETED":
        return
    for key, reason, message in pod_warnings(pod):
        if key not in _warned:
            _warned.add(key)
            if type_ is not None and owner is not None:
                logger.warning("%s: %s", reason, message)
                kopf.warn(owner, reason=reason, message=message)


def _degraded(status: kopf.Status, **_: Any) -> bool:
    return any(c.get("type") == "Degraded" and c.get("status") == "True" for c in status.get("conditions") or [])


@kopf.timer(GROUP, VERSION, PLURAL, interval=20, initial_delay=20, when=_degraded)
async def recheck_degraded(name: str, namespace: str, logger: logging.Logger, memo: kopf.Memo,
                           llmdeployments: kopf.Index, owned_deployments: kopf.Index, owned_pods: kopf.Index,
                           **_: Any) -> None:
    """Look again at a degraded LLMDeployment: a missing Secret may have been created since."""
    try:
        parse_spec((_first(llmdeployments, (namespace, name)) or {}).get("spec") or {})
    except SpecError:
        return
    await _refresh_or_warn(memo, (namespace, name), llmdeployments, owned_deployments, owned_pods, logger)


@kopf.timer(GROUP, VERSION, PLURAL, interval=60, initial_delay=60, when=lambda spec, **_: not _autoscaling_on(spec))
async def resync(name: str, namespace: str, logger: logging.Logger, memo: kopf.Memo, llmdeployments: kopf.Index,
                 owned_deployments: kopf.Index, owned_pods: kopf.Index, **_: Any) -> None:
    """Periodic resync of a fixed-size LLMDeployment (the decision loop does it otherwise): put back owned objects
    that strayed from the plan, and refresh the status."""
    key = (namespace, name)
    await _restore_if_astray(memo, key, logger, llmdeployments, owned_deployments)
    await _refresh_or_warn(memo, key, llmdeployments, owned_deployments, owned_pods, logger)


def _autoscaling_on(spec: kopf.Spec, **_: Any) -> bool:
    return (spec.get("autoscaling") or {}).get("mode", "predictive") != "off"


@kopf.daemon(GROUP, VERSION, PLURAL, when=_autoscaling_on, cancellation_timeout=5.0)
async def autoscale(stopped: kopf.DaemonStopped, name: str, namespace: str, logger: logging.Logger,
                    memo: kopf.Memo, llmdeployments: kopf.Index, owned_deployments: kopf.Index,
                    owned_pods: kopf.Index, **_: Any) -> None:
    """The decision loop: every autoscaling.intervalSeconds, put back owned objects that strayed from the plan,
    then metrics -> forecast -> policy -> scale."""
    key = (namespace, name)
    loop = memo.loops[key] = Loop(key, forecast_step_s=memo.config.forecast_step_s, images=memo.config.images,
                                  rate_window_s=duration_seconds(memo.config.rate_window))
    try:
        while not stopped:
            body = _first(llmdeployments, key)
            if body is None:
                return
            try:
                spec = parse_spec(body.get("spec") or {})
            except SpecError:  # reported by the reconciler (Degraded, InvalidSpec); decide again once fixed
                await stopped.wait(INVALID_SPEC_RECHECK_S)
                continue
            await _restore_if_astray(memo, key, logger, llmdeployments, owned_deployments)
            if loop.needs_backfill(spec):
                loop.configure(spec, None, body.get("status"))
                await backfill(loop, memo.collector, runtime_for(spec).name, logger)
            if _live(llmdeployments, key) is None:  # deleted meanwhile: the loop is told to stop
                return
            deployment = _deployment(owned_deployments, key)
            pods = await _pods(memo.client, owned_pods, key, deployment)
            async with _reconciling.setdefault(key, asyncio.Lock()):  # not while a manual scale is applied
                await step(loop, memo.client, memo.collector, body, spec, deployment, pods, logger)  # reports refusals
            await _refresh_or_warn(memo, key, llmdeployments, owned_deployments, owned_pods, logger)
            await stopped.wait(spec.autoscaling.interval_s)
    finally:
        memo.loops.pop(key, None)
        telemetry.forget(*key)
