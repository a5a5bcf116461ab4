"""Reconcile one LLMDeployment: its owned Deployment, Service and PodDisruptionBudget, and its status.

Called by the kopf handlers on create, update, resume and on changes of owned objects. Every
step is idempotent, so a restart at any point (even after SIGKILL) converges to the same state.
"""

from __future__ import annotations

import contextlib
import logging
import time
from decimal import Decimal
from typing import Any, Iterable, Iterator, Mapping

import kopf
from kubernetes.utils.quantity import parse_quantity

from foresail_operator import GROUP, PLURAL, VERSION, plan
from foresail_operator.config import OperatorConfig
from foresail_operator.kube import ApiError, KubeClient, path_for
from foresail_operator.runtimes import runtime_for
from foresail_operator.scaler import set_replicas
from foresail_operator.spec import LLMDeploymentSpec, SpecError, parse_spec
from foresail_operator.status import PodSummary, now_iso, workload_status

# What to say, besides deleting or renaming it, of an object in the way of one the operator makes.
TAKE_OVER_HINTS = {"PodDisruptionBudget": ", or set spec.disruptionBudget.enabled: false to keep it"}
UNPATCHED = ("selector", "replicas", "clusterIP")  # spec fields of the plan that an update leaves as they are
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets on the pod template
# How long a reconcile's finding stands that an object this LLMDeployment does not own is where one of its own
# belongs (a Deployment of the same name): out_of_plan leaves the owned objects missing meanwhile to the failure
# reported, instead of each decision reading them (and warning) again. As handlers.VANISHED_CHECK_S.
IN_THE_WAY_S = 60.0
_in_the_way: dict[tuple[str, str], float] = {}  # (namespace, owner) -> when a reconcile last found one in the way
# (namespace, owner name) -> kind -> (plan hash, paths): the planned fields the API server left out of an owned object
# when the operator last wrote that plan (one an older server does not know, an empty one it omits), which drift
# skips. Learned again after a restart by one write of each object that lacks one (_ensure); only those are kept.
_left_out: dict[tuple[str, str], dict[str, tuple[str, frozenset[str]]]] = {}


def llmd_path(namespace: str, name: str, subresource: str | None = None) -> str:
    """The REST path of an LLMDeployment."""
    return path_for(f"{GROUP}/{VERSION}", PLURAL, namespace, name, subresource)


def initial_replicas(spec: LLMDeploymentSpec) -> int:
    """The replica count a new Deployment starts with."""
    if not spec.autoscaling_on:
        return spec.fixed_replicas()
    return spec.clamp(spec.replicas if spec.replicas is not None else spec.min_replicas)


async def _ensure(client: KubeClient, body: dict[str, Any], plural: str, api_version: str,
                  replicas: int | None, logger: logging.Logger, owner: Mapping[str, Any]) -> dict[str, Any]:
    """Create the object, or replace its spec when the plan changed; return the live object."""
    meta = body["metadata"]
    path = path_for(api_version, plural, meta["namespace"], meta["name"])
    _in_the_way.pop(_key(owner), None)
    current = await client.get(path)
    kind = body["kind"]
    if current is None:
        if replicas is not None:
            body["spec"]["replicas"] = replicas
        try:
            created = await client.request("POST", path_for(api_version, plural, meta["namespace"]), body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            created = await client.request("GET", path)  # made by us before a restart, or by someone else
        else:
            _learn(owner, body, created)
            logger.info("created %s %s", kind, meta["name"])
            kopf.info(owner, reason="Created", message=f"Created {kind} {meta['name']}")
            return created
        current = created
    if not _owned_by(current, owner):
        _in_the_way[_key(owner)] = time.monotonic()
        raise ApiError(409, "AlreadyExists", f"a {kind} named {meta['name']} exists that this LLMDeployment does "
                                             f"not own: delete or rename it{TAKE_OVER_HINTS.get(kind, '')}")
    want = meta["annotations"][plan.HASH_ANNOTATION]
    have = (current.get("metadata", {}).get("annotations") or {}).get(plan.HASH_ANNOTATION)
    strayed = drift(body, current, left_out(owner, body)) if want == have else None
    if want != have or strayed:
        before = current
        # "add" sets a member whether or not it is there: a field an older server dropped, a field new in this
        # plan, or labels someone removed all of, is written where "replace" would fail.
        ops = [{"op": "add", "path": f"/spec/{key}", "value": _kept(key, value, current)}
               for key, value in body["spec"].items() if key not in UNPATCHED]
        ops += [{"op": "add", "path": "/metadata/labels", "value": meta["labels"]},
                {"op": "add", "path": "/metadata/annotations", "value": {
                    **(current["metadata"].get("annotations") or {}), **meta["annotations"]}},
                {"op": "replace", "path": "/metadata/ownerReferences", "value": meta["ownerReferences"]}]
        current = await client.request("PATCH", path, ops, content_type="application/json-patch+json")
        # a field still missing after this write is one the server leaves out, not one removed outside Foresail
        left = _learn(owner, body, current)
        strayed = strayed and drift(body, before, left)
        if strayed:
            logger.info("restored %s %s: %s was changed outside Foresail", kind, meta["name"], strayed)
            kopf.info(owner, reason="Restored", message=f"Restored {kind} {meta['name']}: {strayed} was changed")
        elif want != have:
            logger.info("updated %s %s (plan %s -> %s)", kind, meta["name"], have, want)
            kopf.info(owner, reason="Updated", message=f"Updated {kind} {meta['name']} to the new spec")
    return current


def _kept(key: str, planned: Any, current: Mapping[str, Any]) -> Any:
    """A planned spec field as written over `current`: a pod template keeps `kubectl rollout restart`'s annotation,
    so that putting back a changed field does not restart every pod once more."""
    template = (current.get("spec") or {}).get("template") or {}
    stamp = ((template.get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT)
    if key != "template" or stamp is None:
        return planned
    meta = planned.get("metadata") or {}
    return {**planned, "metadata": {**meta, "annotations": {**(meta.get("annotations") or {}), RESTARTED_AT: stamp}}}


def drift(planned: Mapping[str, Any], live: Mapping[str, Any], left: frozenset[str] = frozenset()) -> str | None:
    """The first label or planned spec field (not UNPATCHED) of an owned object that differs from its plan or is
    missing, or None.

    Only what the plan sets counts, so the fields the API server adds or defaults do not; nor do those of `left`, the
    planned fields the server left out when the operator wrote them (see left_out). Quantities compare by amount
    (the server writes 0.5 CPU as 500m)."""
    return next((path for path, _lacks in _strays(planned, live) if path not in left), None)


def left_out(owner: Mapping[str, Any], planned: Mapping[str, Any]) -> frozenset[str]:
    """The planned fields the API server left out of `owner`'s object of `planned`'s kind when the operator last
    wrote this plan of it (``_left_out``)."""
    plan_hash, paths = _left_out.get(_key(owner), {}).get(planned["kind"], ("", frozenset()))
    return paths if plan_hash == planned["metadata"]["annotations"][plan.HASH_ANNOTATION] else frozenset()


def _learn(owner: Mapping[str, Any], planned: Mapping[str, Any], written: Mapping[str, Any]) -> frozenset[str]:
    """Keep (``_left_out``) and return the planned fields that `written`, the server's answer to the operator's
    write of `planned`, lacks."""
    paths = frozenset(path for path, lacks in _strays(planned, written) if lacks)
    kinds = _left_out.setdefault(_key(owner), {})
    kinds[planned["kind"]] = (planned["metadata"]["annotations"][plan.HASH_ANNOTATION], paths)
    if not paths:
        del kinds[planned["kind"]]
        if not kinds:
            del _left_out[_key(owner)]
    return paths


def _key(owner: Mapping[str, Any]) -> tuple[str, str]:
    return owner["metadata"]["namespace"], owner["metadata"]["name"]


def forget(namespace: str, name: str) -> None:
    """Drop what is kept for a deleted LLMDeployment (``_left_out``, ``_in_the_way``)."""
    _left_out.pop((namespace, name), None)
    _in_the_way.pop((namespace, name), None)


def _strays(planned: Mapping[str, Any], live: Mapping[str, Any]) -> Iterator[tuple[str, bool]]:
    """Each label and planned spec field (not UNPATCHED) of an owned object that differs from its plan (see drift):
    its path, and whether the object lacks it."""
    labels = (live.get("metadata") or {}).get("labels") or {}
    yield from ((f"metadata.labels.{k}", k not in labels) for k, v in planned["metadata"]["labels"].items()
                if labels.get(k) != v)
    spec = {k: v for k, v in planned["spec"].items() if k not in UNPATCHED}
    yield from _differs(spec, live.get("spec") or {}, "spec")


def _differs(planned: Any, live: Any, path: str) -> Iterator[tuple[str, bool]]:
    """Each value of `planned` that `live` lacks or sets otherwise: its path, and whether `live` lacks it."""
    if isinstance(planned, Mapping) and isinstance(live, Mapping):
        for key, value in planned.items():
            if key in live:
                yield from _differs(value, live[key], f"{path}.{key}")
            else:
                yield f"{path}.{key}", True
    elif isinstance(planned, list) and isinstance(live, list) and len(planned) == len(live):
        for i, (a, b) in enumerate(zip(planned, live, strict=True)):
            yield from _differs(a, b, f"{path}[{i}]")
    elif planned != live and (_amount(planned) is None or _amount(planned) != _amount(live)):
        yield path, False


def _amount(value: Any) -> Decimal | None:
    """The amount of a Kubernetes quantity ("0.5" and "500m", 1 and "1" alike), or None if `value` is none."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    try:
        return parse_quantity(value)
    except ValueError:
        return None


def _in_the_way_lately(owner: Mapping[str, Any]) -> bool:
    """Whether a reconcile of ``owner`` found another's object in the way less than ``IN_THE_WAY_S`` ago."""
    found = _in_the_way.get(_key(owner))
    return found is not None and time.monotonic() - found < IN_THE_WAY_S


def _owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """Whether an ownerReference of `obj` names `owner` (by uid)."""
    uid = owner["metadata"]["uid"]
    return any(ref.get("uid") == uid for ref in obj.get("metadata", {}).get("ownerReferences") or ())


async def _remove_owned(client: KubeClient, path: str, owner: Mapping[str, Any], logger: logging.Logger) -> None:
    """Delete the object at `path` if this owner owns it (never one a user made under the same name)."""
    current = await client.get(path)
    if current is None or not _owned_by(current, owner):
        return
    kind, name = current.get("kind", "object"), current["metadata"]["name"]
    try:
        await client.request("DELETE", path, {"apiVersion": "v1", "kind": "DeleteOptions",
                                              "preconditions": {"uid": current["metadata"]["uid"]}})
    except ApiError as exc:
        if exc.status not in (404, 409):  # gone already, or replaced by another object since the GET
            raise
        return
    logger.info("deleted %s %s (disabled in the spec)", kind, name)
    kopf.info(owner, reason="Deleted", message=f"Deleted {kind} {name} (disabled in the spec)")


async def kubelet_sleeps(client: KubeClient, pre_stop: str) -> bool:
    """Whether the preStop hook is the kubelet's sleep action: as configured, or (`auto`) where the API
    server and every node's kubelet are at least plan.SLEEP_ACTION_SINCE (the server alone where the
    nodes cannot be listed; each read once, ApiError while unreadable)."""
    if pre_stop != "auto":
        return pre_stop == "sleep"
    if await client.server_version() < plan.SLEEP_ACTION_SINCE:
        return False
    kubelet = await client.oldest_kubelet()
    return kubelet is None or kubelet >= plan.SLEEP_ACTION_SINCE


async def plan_for(client: KubeClient, config: OperatorConfig, body: Mapping[str, Any], spec: LLMDeploymentSpec
                   ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """The Service, Deployment and PodDisruptionBudget (None when disabled) that `body` plans, owned by it."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    runtime = runtime_for(spec, config.images)
    service = plan.service(name, namespace, runtime)
    deployment = plan.deployment(name, namespace, spec, runtime, await kubelet_sleeps(client, config.pre_stop),
                                 config.fetch_image)
    budget = plan.disruption_budget(name, namespace, spec, runtime)
    kopf.adopt([service, deployment] + ([budget] if budget else []), owner=dict(body), nested=())
    return service, deployment, budget


async def out_of_plan(client: KubeClient, config: OperatorConfig, body: Mapping[str, Any],
                      live: tuple[Mapping[str, Any] | None, ...]) -> bool:
    """Whether a reconcile has something to put back: of the owned Service, Deployment and PodDisruptionBudget as
    last seen (`live`, None where there is none), one is missing, strayed from the plan, or a budget the spec
    disables. An object this LLMDeployment does not own is left to the reconcile's report, and so are those missing
    while a reconcile found another's object in the way less than IN_THE_WAY_S ago: it stopped there, and the other
    object is not watched."""
    planned = await plan_for(client, config, body, parse_spec(body.get("spec") or {}))
    for want, have in zip(planned, live, strict=True):
        if have is not None and not _owned_by(have, body):
            continue
        if want is None:
            if have is not None:
                return True
        elif have is None:
            if not _in_the_way_lately(body):
                return True
        elif drift(want, have, left_out(body, want)) or (have["metadata"].get("annotations") or {}).get(
                plan.HASH_ANNOTATION) != want["metadata"]["annotations"][plan.HASH_ANNOTATION]:
            return True
    return False


async def reconcile(client: KubeClient, config: OperatorConfig, body: Mapping[str, Any],
                    logger: logging.Logger, manual_replicas: int | None = None, wake: bool = False,
                    pods: Iterable[PodSummary] = ()) -> dict[str, Any]:
    """Bring the owned Deployment, Service and PodDisruptionBudget in line with the spec; return the Deployment.

    `manual_replicas` is a replica count written through the scale subresource (kubectl scale)
    while autoscaling is on: it is applied at once, clamped to [minReplicas, maxReplicas].
    `wake`: the activator holds a request for this deployment, so one at zero gets a replica at once.
    Otherwise a count outside [minReplicas, maxReplicas] is brought within them, except in advisory mode.
    `pods`: the owned pods, of which a scale-down removes those with the fewest requests in flight first.
    """
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    spec = parse_spec(body.get("spec") or {})
    owner = dict(body)
    service, deployment, budget = await plan_for(client, config, body, spec)
    await _ensure(client, service, "services", "v1", None, logger, owner)
    live = await _ensure(client, deployment, "deployments", "apps/v1", initial_replicas(spec), logger, owner)
    current = int(live.get("spec", {}).get("replicas") or 0)
    target, why = None, ""
    if not spec.autoscaling_on:
        target, why = spec.fixed_replicas(), "spec.replicas" if spec.replicas is not None else "spec.minReplicas"
    elif manual_replicas is not None:
        target, why = spec.clamp(manual_replicas), "manual scale"
    elif wake and current == 0 and spec.autoscaling.mode != "advisory":
        target, why = spec.clamp(1), "a request is waiting at the activator"
    elif spec.clamp(current) != current and spec.autoscaling.mode != "advisory":  # advisory never writes them
        target, why = spec.clamp(current), "minReplicas/maxReplicas"
    if target is not None and target != current:
        await set_replicas(client, (namespace, name), current, target, spec.runtime.name, pods, logger)
        live.setdefault("spec", {})["replicas"] = target
        logger.info("scaled %s from %d to %d (%s)", name, current, target, why)
        kopf.info(owner, reason="Scaled", message=f"Scaled Deployment {name} from {current} to {target} ({why})")
        try:
            await record_scale(client, namespace, name, current, target, f"{why}: {current} -> {target}")
        except ApiError as exc:  # the replicas are set: only their record in the status failed, no reconcile failure
            logger.warning("scaled %s/%s %d -> %d, but cannot record it in the status: %s", namespace, name, current,
                           target, exc)
    # Last: a budget the operator may not write (an image upgraded before its chart's RBAC) leaves the
    # workload served and scaled, and the error in the Degraded condition.
    if budget is not None:
        await _ensure(client, budget, "poddisruptionbudgets", "policy/v1", None, logger, owner)
    else:
        await _remove_owned(client, path_for("policy/v1", "poddisruptionbudgets", namespace, name), owner, logger)
    return live


async def record_scale(client: KubeClient, namespace: str, name: str, old: int, new: int, reason: str) -> None:
    """Record a scale decision in status: last scale time and reason, and the bounded history."""
    live = await client.get(llmd_path(namespace, name))
    if live is None:
        return
    history = list((live.get("status") or {}).get("history") or [])
    stamp = now_iso()
    history = (history + [{"time": stamp, "from": old, "to": new, "reason": reason}])[-10:]
    await client.merge_patch(llmd_path(namespace, name, "status"), {"status": {
        "lastScaleTime": stamp, "lastScaleReason": reason, "history": history}})


async def secret_problems(client: KubeClient, namespace: str, spec: LLMDeploymentSpec) -> list[tuple[str, str]]:
    """Problems the schema cannot see: the token Secret (or its key), or a ConfigMap or Secret of runtime.mounts,
    that does not exist (the pods wait for a volume in ContainerCreating). One the operator may not read (403:
    a chart or RBAC without the right) goes unchecked, and the status is still written."""
    problems = []
    if spec.model.token_secret:
        readable, secret = await _read(client, path_for("v1", "secrets", namespace, spec.model.token_secret))
        if readable and secret is None:
            problems.append(("SecretNotFound", f"Secret {spec.model.token_secret} (spec.model.tokenSecretRef) does "
                                               f"not exist in namespace {namespace}"))
        elif secret is not None and \
                spec.model.token_secret_key not in (secret.get("data") or {}) | (secret.get("stringData") or {}):
            problems.append(("SecretKeyNotFound",
                             f"Secret {spec.model.token_secret} has no key {spec.model.token_secret_key}"))
    for i, mount in enumerate(spec.runtime.mounts):
        kind, plural, name = (("ConfigMap", "configmaps", mount["configMap"]) if "configMap" in mount
                              else ("Secret", "secrets", mount["secret"]))
        readable, found = await _read(client, path_for("v1", plural, namespace, name))
        if readable and found is None:
            problems.append((f"{kind}NotFound", f"{kind} {name} (spec.runtime.mounts[{i}]) does not exist in "
                                                f"namespace {namespace}: the pods wait for it to mount it"))
    return problems


async def _read(client: KubeClient, path: str) -> tuple[bool, dict[str, Any] | None]:
    """Whether the operator may read the object at ``path`` (not a 403: a chart or RBAC without the right), and the
    object (None where there is none, or it may not be read)."""
    try:
        return True, await client.get(path)
    except ApiError as exc:
        if exc.status != 403:
            raise
        return False, None


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Compare a new status with the stored one, ignoring condition timestamps; a null in the new one (a
    field the merge patch removes) matches its absence."""
    def known(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: known(v) for k, v in value.items() if v is not None}
        return value

    def strip(s: Mapping[str, Any]) -> Any:
        conds = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in s.get("conditions") or []]
        return known({**s, "conditions": conds})
    return strip(a) == strip({k: b.get(k) for k in a})


async def refresh_status(client: KubeClient, body: Mapping[str, Any], deployment: Mapping[str, Any] | None,
                         pods: Iterable[PodSummary], extra_problems: list[tuple[str, str]] | None = None,
                         autoscaler: Mapping[str, Any] | None = None, config: OperatorConfig | None = None
                         ) -> dict[str, Any] | None:
    """Recompute the status and patch it when it changed; the LLMDeployment as patched, None where unchanged.

    `autoscaler` is the decision loop's view (see autoscaler.py): its conditions and its status
    fields (recommendedReplicas, forecast) are written together with the workload's, so that one
    writer owns the conditions list. With `config`, a Deployment of another plan than the spec's is not rolled out.
    """
    meta = body["metadata"]
    previous = body.get("status") or {}
    problems = list(extra_problems or [])
    plan_hash = None
    try:
        spec = parse_spec(body.get("spec") or {})
    except SpecError:  # the caller passes the error in extra_problems (InvalidSpec)
        autoscaling_on = ((body.get("spec") or {}).get("autoscaling") or {}).get("mode") != "off"
    else:
        autoscaling_on = spec.autoscaling_on
        problems += await secret_problems(client, meta["namespace"], spec)
        if config is not None:
            with contextlib.suppress(ApiError):  # the nodes unreadable: the reconcile reports it
                planned = (await plan_for(client, config, body, spec))[1]
                plan_hash = planned["metadata"]["annotations"][plan.HASH_ANNOTATION]
    desired = int(((deployment or {}).get("spec") or {}).get("replicas") or 0)
    new = workload_status(
        name=meta["name"], generation=meta.get("generation"), desired=desired, deployment=deployment,
        pods=list(pods), problems=problems, previous=previous, autoscaling_on=autoscaling_on,
        autoscaler=(autoscaler or {}).get("conditions"), plan_hash=plan_hash)
    new["selector"] = plan.selector_string(meta["name"])
    if autoscaling_on:  # else a loop still stopping may hand in a last view
        new.update((autoscaler or {}).get("fields") or {})
    if _same(new, previous):
        return None
    patched = await client.merge_patch(llmd_path(meta["namespace"], meta["name"], "status"), {"status": new})
    degraded = next(c for c in new["conditions"] if c["type"] == "Degraded")
    old_degraded: dict[str, Any] = next(
        (c for c in previous.get("conditions") or [] if c.get("type") == "Degraded"), {})
    was = (old_degraded.get("status"), old_degraded.get("reason"))
    if degraded["status"] == "True" and was != ("True", degraded["reason"]):
        kopf.warn(dict(body), reason=degraded["reason"], message=degraded["message"])
    elif degraded["status"] == "False" and old_degraded.get("status") == "True":
        kopf.info(dict(body), reason="Recovered", message="the problem is gone: " + old_degraded.get("message", ""))
    return patched
