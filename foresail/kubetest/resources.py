"""Resource types the server knows: the built-in table and those registered by CRDs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
COMMON_FIELDS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True)
class ScaleSpec:
    """Where a type keeps the numbers its ``/scale`` subresource reads and writes."""

    spec_replicas_path: str = ".spec.replicas"
    status_replicas_path: str = ".status.replicas"
    label_selector_path: str | None = None


@dataclass(frozen=True)
class ResourceType:
    """One served resource of one group/version."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    status: bool = False
    scale: ScaleSpec | None = None
    field_selectors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    singular: str = ""
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False, hash=False)
    custom: bool = False

    @property
    def api_version(self) -> str:
        """``apps/v1`` or ``v1``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        """The storage key: objects are shared by every version of a resource."""
        return (self.group, self.plural)

    @property
    def singular_name(self) -> str:
        """The singular name (the lower-case kind unless declared)."""
        return self.singular or self.kind.lower()

    def selectable_fields(self) -> tuple[str, ...]:
        """Field names a field selector may use on this type."""
        return COMMON_FIELDS + self.field_selectors

    def discovery(self) -> list[dict[str, Any]]:
        """This type's entries in an APIResourceList (the resource and its subresources)."""
        entries: list[dict[str, Any]] = [{
            "name": self.plural, "singularName": self.singular_name, "namespaced": self.namespaced,
            "kind": self.kind, "verbs": list(VERBS), "storageVersionHash": "",
        }]
        if self.short_names:
            entries[0]["shortNames"] = list(self.short_names)
        if self.categories:
            entries[0]["categories"] = list(self.categories)
        if self.status:
            entries.append({"name": f"{self.plural}/status", "singularName": "",
                            "namespaced": self.namespaced, "kind": self.kind,
                            "verbs": ["get", "patch", "update"]})
        if self.scale:
            entries.append({"name": f"{self.plural}/scale", "singularName": "",
                            "namespaced": self.namespaced, "group": "autoscaling",
                            "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
        return entries


def _t(group: str, version: str, plural: str, kind: str, **kw: Any) -> ResourceType:
    return ResourceType(group, version, plural, kind, **kw)


DEPLOYMENT_SCALE = ScaleSpec(".spec.replicas", ".status.replicas", None)

# The built-in resources: one line each.
BUILTIN: tuple[ResourceType, ...] = (
    _t("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",), status=True,
       field_selectors=("status.phase",)),
    _t("", "v1", "nodes", "Node", namespaced=False, short_names=("no",), status=True),
    _t("", "v1", "pods", "Pod", short_names=("po",), status=True, categories=("all",),
       field_selectors=("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                        "spec.serviceAccountName", "status.phase", "status.podIP")),
    _t("", "v1", "services", "Service", short_names=("svc",), status=True, categories=("all",)),
    _t("", "v1", "secrets", "Secret", field_selectors=("type",)),
    _t("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    _t("", "v1", "events", "Event", short_names=("ev",),
       field_selectors=("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                        "involvedObject.uid", "involvedObject.apiVersion",
                        "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                        "reportingComponent", "source", "type")),
    _t("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _t("", "v1", "endpoints", "Endpoints", short_names=("ep",)),
    _t("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    _t("apps", "v1", "deployments", "Deployment", short_names=("deploy",), status=True,
       scale=DEPLOYMENT_SCALE, categories=("all",)),
    _t("apps", "v1", "replicasets", "ReplicaSet", short_names=("rs",), status=True,
       scale=DEPLOYMENT_SCALE, categories=("all",)),
    _t("events.k8s.io", "v1", "events", "Event", short_names=("ev",),
       field_selectors=("regarding.kind", "regarding.namespace", "regarding.name",
                        "regarding.uid", "reason", "type", "reportingController")),
    _t("coordination.k8s.io", "v1", "leases", "Lease"),
    _t("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", short_names=("hpa",),
       status=True, categories=("all",)),
    _t("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
       namespaced=False, short_names=("crd", "crds"), status=True),
    _t("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _t("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _t("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    _t("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
       namespaced=False),
    _t("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short_names=("netpol",)),
    _t("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short_names=("pdb",),
       status=True),
)


class Registry:
    """The served resource types, by group/version/plural."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._by_crd: dict[str, list[ResourceType]] = {}
        for rt in BUILTIN:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The type served at ``group/version/plural``, if any."""
        return self._types.get((group, version, plural))

    def all(self) -> Iterator[ResourceType]:
        """Every served type."""
        return iter(list(self._types.values()))

    def group_versions(self) -> dict[str, list[str]]:
        """Served versions per group, preferred version first (non-core groups only)."""
        groups: dict[str, list[str]] = {}
        for rt in self._types.values():
            if rt.group and rt.version not in groups.setdefault(rt.group, []):
                groups[rt.group].append(rt.version)
        for versions in groups.values():
            versions.sort(key=_version_priority)
        return groups

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        """The types of one group/version."""
        return [rt for rt in self._types.values() if rt.group == group and rt.version == version]

    def register(self, crd_name: str, types: list[ResourceType]) -> None:
        """Serve the types of a CRD, replacing what it served before."""
        self.unregister(crd_name)
        for rt in types:
            self._types[(rt.group, rt.version, rt.plural)] = rt
        self._by_crd[crd_name] = types

    def unregister(self, crd_name: str) -> list[ResourceType]:
        """Stop serving a CRD's types; returns them."""
        types = self._by_crd.pop(crd_name, [])
        for rt in types:
            self._types.pop((rt.group, rt.version, rt.plural), None)
        return types


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0))
