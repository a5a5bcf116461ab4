"""CustomResourceDefinitions: checking them, serving their types, and their status."""

from __future__ import annotations

from typing import Any

from . import cel, schema
from .errors import Cause, format_value
from .resources import Registry, ResourceType, ScaleSpec


def validate_crd(crd: dict[str, Any]) -> list[Cause]:
    """Why the API server would refuse this CRD (names, scope, versions, structural schemas)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural = spec.get("group") or "", names.get("plural") or ""
    causes = []
    if "." not in group:
        causes.append(Cause("FieldValueInvalid", f"Invalid value: {format_value(group)}: should "
                            "be a domain with at least one dot", "spec.group"))
    for key in ("plural", "kind"):
        if not names.get(key):
            causes.append(Cause("FieldValueRequired", "Required value", f"spec.names.{key}"))
    if plural and plural != plural.lower():
        causes.append(Cause("FieldValueInvalid", f'Invalid value: "{plural}": a lowercase RFC '
                            "1123 label must consist of lower case alphanumeric characters",
                            "spec.names.plural"))
    name = (crd.get("metadata") or {}).get("name")
    if plural and group and name != f"{plural}.{group}":
        causes.append(Cause("FieldValueInvalid", f'Invalid value: "{name}": must be '
                            'spec.names.plural+"."+spec.group', "metadata.name"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(Cause("FieldValueNotSupported", f"Unsupported value: "
                            f"{format_value(spec.get('scope'))}: supported values: "
                            '"Cluster", "Namespaced"', "spec.scope"))
    versions = spec.get("versions") or []
    if not versions:
        causes.append(Cause("FieldValueRequired", "Required value: must have at least one "
                            "version", "spec.versions"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(Cause("FieldValueInvalid", "Invalid value: must have exactly one version "
                            "marked as storage version", "spec.versions"))
    for index, version in enumerate(versions):
        causes += _version_causes(version, f"spec.versions[{index}]")
    return causes


def _version_causes(version: dict[str, Any], path: str) -> list[Cause]:
    causes = []
    if not version.get("name"):
        causes.append(Cause("FieldValueRequired", "Required value", f"{path}.name"))
    root = (version.get("schema") or {}).get("openAPIV3Schema")
    where = f"{path}.schema.openAPIV3Schema"
    if root is None:
        causes.append(Cause("FieldValueRequired", "Required value: schemas are required", where))
    else:
        if root.get("type") != "object":
            causes.append(Cause("FieldValueInvalid", 'Invalid value: must be "object" at the '
                                "root", f"{where}.type"))
        causes += schema.structural_errors(root, where)
        causes += cel.rule_compile_errors(root, where)
    scale = (version.get("subresources") or {}).get("scale")
    if scale is not None:
        for key, prefix in (("specReplicasPath", ".spec."), ("statusReplicasPath", ".status.")):
            value = scale.get(key) or ""
            if not value.startswith(prefix):
                causes.append(Cause("FieldValueInvalid", f"Invalid value: {format_value(value)}:"
                                    f" should be a json path under {prefix.rstrip('.')}",
                                    f"{path}.subresources.scale.{key}"))
    return causes


def resource_types(crd: dict[str, Any]) -> list[ResourceType]:
    """The types a (valid) CRD serves: one per served version."""
    spec = crd["spec"]
    names = spec["names"]
    types = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        scale = subresources.get("scale")
        fields = tuple(f["jsonPath"].lstrip(".") for f in version.get("selectableFields") or [])
        types.append(ResourceType(
            group=spec["group"], version=version["name"], plural=names["plural"],
            kind=names["kind"], namespaced=spec["scope"] == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()), status="status" in subresources,
            scale=ScaleSpec(scale["specReplicasPath"], scale["statusReplicasPath"],
                            scale.get("labelSelectorPath")) if scale is not None else None,
            field_selectors=fields, categories=tuple(names.get("categories") or ()),
            singular=names.get("singular") or "",
            schema=(version.get("schema") or {}).get("openAPIV3Schema"),
            printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            custom=True))
    return types


def establish(registry: Registry, crd: dict[str, Any], timestamp: str) -> dict[str, Any]:
    """Serve a CRD's types and set its status (NamesAccepted, Established, acceptedNames);
    ``timestamp`` is the time of conditions that change now."""
    registry.register(crd["metadata"]["name"], resource_types(crd))
    names = dict(crd["spec"]["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", names["kind"] + "List")
    old = {c.get("type"): c for c in (crd.get("status") or {}).get("conditions") or []}

    def condition(kind: str, reason: str, message: str) -> dict[str, Any]:
        previous = old.get(kind) or {}
        since = previous.get("lastTransitionTime") if previous.get("status") == "True" else None
        return {"type": kind, "status": "True", "reason": reason, "message": message,
                "lastTransitionTime": since or timestamp}

    storage = [v["name"] for v in crd["spec"]["versions"] if v.get("storage")]
    stored = list((crd.get("status") or {}).get("storedVersions") or [])
    crd["status"] = {
        "conditions": [condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                       condition("Established", "InitialNamesAccepted",
                                 "the initial names have been accepted")],
        "acceptedNames": names,
        "storedVersions": stored + [v for v in storage if v not in stored],
    }
    return crd


def unregister(registry: Registry, crd: dict[str, Any]) -> list[ResourceType]:
    """Stop serving a deleted CRD's types; returns them."""
    return registry.unregister(crd["metadata"]["name"])
