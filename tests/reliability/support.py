"""Small helpers shared by the reliability tests: paths, conditions, events, ownership checks."""

from __future__ import annotations

from typing import Any

from tests.helpers import Kube, wait_for

NS = "default"
LLMDS = f"/apis/foresail.dev/v1alpha1/namespaces/{NS}/llmdeployments"
DEPLOYS = f"/apis/apps/v1/namespaces/{NS}/deployments"
SERVICES = f"/api/v1/namespaces/{NS}/services"
PODS = f"/api/v1/namespaces/{NS}/pods"
EVENTS = f"/api/v1/namespaces/{NS}/events"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"
OWNER_LABEL = "foresail.dev/llmdeployment"


def llmd_doc(name: str, **spec: Any) -> dict[str, Any]:
    """An LLMDeployment of the built-in tiny model; keyword arguments go into its spec."""
    return {"apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": name},
            "spec": {"model": {"source": "builtin:tiny"}, **spec}}


def condition(obj: dict | None, type_: str) -> dict:
    """One status condition of an object ({} when absent)."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return {}


def events_for(kube: Kube, name: str) -> list[dict]:
    """The core Events about an object of this name."""
    return [e for e in kube.read(EVENTS)["items"] if (e.get("involvedObject") or {}).get("name") == name]


def owned(kube: Kube, collection: str) -> list[dict]:
    """Every object of a collection that carries the operator's owner label."""
    return [o for o in kube.read(collection)["items"] if OWNER_LABEL in (o["metadata"].get("labels") or {})]


def converged(kube: Kube, name: str, replicas: int, model: str | None = None) -> dict | bool:
    """The LLMDeployment when its Deployment, Service and status all match the spec, else False."""
    obj = kube.get(f"{LLMDS}/{name}")
    dep = kube.get(f"{DEPLOYS}/{name}")
    if obj is None or dep is None or kube.get(f"{SERVICES}/{name}") is None:
        return False
    status = obj.get("status") or {}
    command = " ".join(dep["spec"]["template"]["spec"]["containers"][0]["command"])
    return (dep["spec"]["replicas"] == replicas
            and (model is None or model in command)
            and status.get("readyReplicas") == replicas
            and status.get("observedGeneration") == obj["metadata"]["generation"]
            and condition(obj, "Ready").get("status") == "True"
            and condition(obj, "Degraded").get("status") == "False"
            and obj)


def wait_converged(kube: Kube, name: str, replicas: int, model: str | None = None, timeout: float = 30.0) -> dict:
    """Wait (bounded) until `converged` holds."""
    return wait_for(lambda: converged(kube, name, replicas, model), timeout=timeout,
                    what=f"{name}: {replicas} ready replicas, spec applied, Ready=True, Degraded=False")


def assert_no_orphans_or_duplicates(kube: Kube) -> None:
    """Every owned Deployment, Service and Pod belongs to a live LLMDeployment; one Deployment and
    one Service per LLMDeployment, each controlled by that object's uid."""
    owners = {o["metadata"]["name"]: o["metadata"]["uid"] for o in kube.read(LLMDS)["items"]}
    for collection in (DEPLOYS, SERVICES):
        objs = owned(kube, collection)
        names = sorted(o["metadata"]["labels"][OWNER_LABEL] for o in objs)
        assert names == sorted(owners), f"{collection}: owned by {names}, LLMDeployments {sorted(owners)}"
        for o in objs:
            refs = o["metadata"].get("ownerReferences") or []
            assert [(r["name"], r["uid"], r.get("controller")) for r in refs] == [
                (o["metadata"]["name"], owners[o["metadata"]["name"]], True)], refs
    for pod in owned(kube, PODS):
        assert pod["metadata"]["labels"][OWNER_LABEL] in owners, f"orphan pod {pod['metadata']['name']}"


def requests_to(audit: list[dict], verb: str, resource: str, name: str | None = None,
                subresource: str = "", agent: str = "foresail-operator") -> int:
    """How many requests of the operator's own client matched (faulted ones included)."""
    return sum(1 for e in audit if e["verb"] == verb and e["resource"] == resource
               and (name is None or e["name"] == name) and (e.get("subresource") or "") == subresource
               and e["userAgent"].startswith(agent))
