"""Admission of built-in objects: server-side defaults and validation.

Validation uses the official Kubernetes 1.32 JSON schemas shipped by ``kubernetes-validate``
(every violation is reported, not just the first), plus the few cross-field checks the real
server makes that a schema cannot express (a Deployment's selector must match its template's
labels, containers need a name and an image, Secret data must be base64, a Pod's or pod template's
deletion cost must be a 32-bit integer, a rolling update's maxUnavailable and maxSurge must be counts or
percentages, no ``..`` in a hostPath volume's path, an env var's fieldRef and resourceFieldRef name a field and a
resource that exist and a divisor the resource supports, a Pod's container images have no leading or trailing
whitespace, annotation keys are qualified names and all annotations together at most 256 KiB).
"""

from __future__ import annotations

import base64
import functools
import math
import random
import re
from fractions import Fraction
from typing import Any

import jsonschema
import referencing
from kubernetes_validate import utils as kv_utils

from .errors import Cause, format_value
from .selectors import label_matcher, selector_to_string

KUBERNETES_VERSION = "1.32.0"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_COST = re.compile(r"^(0|-[0-9]+|[1-9][0-9]*)$")  # Go's ParseInt, after its check of the first digit
_PERCENT = re.compile(r"^[0-9]+%$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ANNOTATIONS_LIMIT_B = 256 * 1024  # TotalAnnotationSizeLimitB: the keys and values of an object's annotations
# the fields and resources an env var's valueFrom may reference (validEnvDownwardAPIFieldPathExpressions and
# validContainerResourceFieldPathExpressions of Kubernetes 1.32; metadata.labels['k'] and annotations['k'] too)
_ENV_FIELD_PATHS = frozenset({"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                              "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP",
                              "status.podIPs"})
_ENV_RESOURCES = frozenset({"limits.cpu", "limits.memory", "limits.ephemeral-storage", "requests.cpu",
                            "requests.memory", "requests.ephemeral-storage"})
# resource.Quantity's syntax (a sign, a number, a decimal SI or binary suffix or a decimal exponent), and the
# divisors validateContainerResourceDivisor accepts for each kind of resource (as Quantity.String() writes them)
_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([numkMGTPE]|[KMGTPE]i|[eE][-+]?[0-9]+)?$")
_SI_EXPONENTS = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BYTE_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")
_DIVISORS = {"cpu": (("1m", "1"), "1m and 1", "cpu"), "memory": (_BYTE_DIVISORS, ", ".join(_BYTE_DIVISORS), "memory"),
             "ephemeral-storage": (_BYTE_DIVISORS, ", ".join(_BYTE_DIVISORS), "local ephemeral storage")}
_PERCENT_ERROR = ("a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or "
                  "'93%', regex used for validation is '[0-9]+%')")


def valid_deletion_cost(value: str) -> bool:
    """Whether the API server accepts ``value`` for the pod-deletion-cost annotation: a 32-bit
    integer, without a plus sign or leading zeros."""
    return bool(_COST.match(value)) and -2**31 <= int(value) < 2**31


@functools.lru_cache(maxsize=128)
def _validator(api_version: str, kind: str, strict: bool) -> Any:
    """A jsonschema validator for one built-in kind (None when no schema exists)."""
    directory = f"v{KUBERNETES_VERSION}-local" + ("-strict" if strict else "")
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv_utils.schema_contents(
            f"kubernetes-json-schema/{directory}/{kind.lower()}-{group_version}.json",
            KUBERNETES_VERSION)
    except FileNotFoundError:
        return None
    definitions = kv_utils.schema_contents(
        f"kubernetes-json-schema/{directory}/_definitions.json", KUBERNETES_VERSION)
    registry = referencing.Resource.from_contents(schema) @ referencing.Registry()
    registry = referencing.Resource.from_contents(definitions) @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def _field(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def schema_causes(obj: dict[str, Any], strict: bool = False) -> list[Cause]:
    """Violations of the official schema of a built-in object (none if the kind has none)."""
    validator = _validator(obj.get("apiVersion", ""), obj.get("kind", ""), strict)
    if validator is None:
        return []
    causes = []
    for error in validator.iter_errors(obj):
        where = _field(error.absolute_path)
        if error.validator == "required" and where.split(".")[0].split("[")[0] == "status":
            continue  # Go's zero values: the real server requires no status field (a controller fills them)
        if error.validator == "required":
            missing = re.match(r"'([^']+)'", error.message)
            name = missing.group(1) if missing else "?"
            causes.append(Cause("FieldValueRequired", "Required value",
                                f"{where}.{name}" if where else name))
        elif error.validator == "additionalProperties":
            causes.append(Cause("FieldValueInvalid", f"unknown field: {error.message}", where))
        else:
            causes.append(Cause("FieldValueInvalid", f"Invalid value: "
                                f"{format_value(error.instance)}: {error.message}", where))
    return causes


def _pod_spec_causes(spec: dict[str, Any], path: str) -> list[Cause]:
    causes = []
    for index, container in enumerate(spec.get("containers") or []):
        where = f"{path}.containers[{index}]"
        if not isinstance(container, dict):
            continue
        name = container.get("name")
        if not name:
            causes.append(Cause("FieldValueRequired", "Required value", f"{where}.name"))
        elif not isinstance(name, str) or not _DNS_LABEL.match(name):
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {format_value(name)}: a "
                                "lowercase RFC 1123 label must consist of lower case alphanumeric "
                                "characters or '-'", f"{where}.name"))
        if not container.get("image"):
            causes.append(Cause("FieldValueRequired", "Required value", f"{where}.image"))
    if isinstance(spec.get("containers"), list) and not spec["containers"]:
        causes.append(Cause("FieldValueRequired", "Required value", f"{path}.containers"))
    return causes + _pod_refs_causes(spec, path)


def _pod_image_causes(spec: dict[str, Any]) -> list[Cause]:
    """validateContainersOnlyForPod: a Pod's (not a template's) images have no leading or trailing whitespace."""
    return [Cause("FieldValueInvalid", f"Invalid value: {format_value(image)}: must not have leading or trailing "
                  "whitespace", f"spec.{kind}[{index}].image")
            for kind in ("containers", "initContainers") for index, container in _items(spec.get(kind))
            if isinstance(image := container.get("image"), str) and image != image.strip()]


def _items(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """The objects of a list field, with their index (anything else the schema reports)."""
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)] if isinstance(value, list) else []


def _env_source_causes(source: Any, where: str) -> list[Cause]:
    """validateEnvVarValueFrom's checks of a ``fieldRef`` (a supported field, v1) and a ``resourceFieldRef``
    (a supported resource) that the schema cannot make."""
    source = source if isinstance(source, dict) else {}
    causes = []
    field_ref, resource_ref = source.get("fieldRef"), source.get("resourceFieldRef")
    if isinstance(field_ref, dict) and isinstance(field_ref.get("fieldPath"), str) and field_ref["fieldPath"]:
        field_path, version = field_ref["fieldPath"], field_ref.get("apiVersion") or "v1"
        subscripted = re.fullmatch(r"(metadata\.(?:labels|annotations))\['[^']*'\]", field_path)
        if version != "v1":
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {format_value(field_path)}: error converting "
                                f"fieldPath: unsupported pod version: {version}", f"{where}.fieldRef.fieldPath"))
        elif not subscripted and field_path not in _ENV_FIELD_PATHS:
            causes.append(Cause("FieldValueNotSupported", f"Unsupported value: {format_value(field_path)}: supported "
                                f"values: {', '.join(map(format_value, sorted(_ENV_FIELD_PATHS)))}",
                                f"{where}.fieldRef.fieldPath"))
    if isinstance(resource_ref, dict) and isinstance(resource_ref.get("resource"), str) and \
            resource_ref["resource"] not in _ENV_RESOURCES and not resource_ref["resource"].startswith(
                ("limits.hugepages-", "requests.hugepages-")):
        causes.append(Cause("FieldValueNotSupported", f"Unsupported value: {format_value(resource_ref['resource'])}: "
                            f"supported values: {', '.join(map(format_value, sorted(_ENV_RESOURCES)))}",
                            f"{where}.resourceFieldRef.resource"))
    if isinstance(resource_ref, dict) and isinstance(resource_ref.get("resource"), str):
        causes += _divisor_causes(resource_ref["resource"], resource_ref.get("divisor"), f"{where}.resourceFieldRef")
    return causes


def _divisor_string(divisor: Any) -> str | None:
    """Quantity.String() of ``divisor`` where that is 0, 1, 1m, 1k ... 1E or 1Ki ... 1Ei; "" for any other
    quantity, None for no quantity (the schema's business)."""
    match = _QUANTITY.match(str(divisor)) if isinstance(divisor, (int, str)) and not isinstance(divisor, bool) else None
    if not match:
        return None
    number, suffix = Fraction(match[1]), match[2] or ""
    exponent = len(suffix) > 1 and not suffix.endswith("i")  # e3, E-3 (E alone: exa)
    if suffix.endswith("i"):
        value = number * 1024 ** ("KMGTPE".index(suffix[0]) + 1)
    else:
        value = number * Fraction(10) ** (int(suffix[1:]) if exponent else _SI_EXPONENTS[suffix])
    value = Fraction(math.ceil(value * 10**9), 10**9)  # ParseQuantity rounds up to nano
    if value in (0, 1):
        return str(value)
    if exponent:  # written back as 1e3, 1e-3 ...
        return ""
    if suffix.endswith("i") and value >= 1024:  # binary, in powers of 1024 (else in decimal SI)
        return next((f"1{p}i" for n, p in enumerate("KMGTPE", 1) if value == 1024 ** n), "")
    return next((f"1{p}" for n, p in enumerate("mkMGTPE") if value == Fraction(1000) ** (n or -1)), "")


def _divisor_causes(resource: str, divisor: Any, where: str) -> list[Cause]:
    """validateContainerResourceDivisor: a resourceFieldRef's divisor (0: none) is one its resource supports."""
    scope, _, kind = resource.partition(".")
    allowed, listed, name = _DIVISORS["memory"][:2] + ("hugepages",) if kind.startswith("hugepages-") else \
        _DIVISORS.get(kind, ((), "", ""))
    written = _divisor_string(divisor)
    if scope not in ("limits", "requests") or not listed or written is None or written == "0" or written in allowed:
        return []
    return [Cause("FieldValueInvalid", f"Invalid value: {format_value(resource)}: only divisor's values {listed} are "
                  f"supported with the {name} resource", f"{where}.divisor")]


def _pod_refs_causes(spec: dict[str, Any], path: str) -> list[Cause]:
    """The pod spec checks the real server makes on paths and references: no ``..`` in a hostPath volume's path,
    env ``valueFrom`` field and resource references that exist."""
    causes = []
    for index, volume in _items(spec.get("volumes")):
        host_path = (volume.get("hostPath") or {}).get("path") if isinstance(volume.get("hostPath"), dict) else None
        if isinstance(host_path, str) and ".." in host_path.split("/"):
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {format_value(host_path)}: must not contain "
                                "'..'", f"{path}.volumes[{index}].hostPath.path"))
    for kind in ("initContainers", "containers"):
        for index, container in _items(spec.get(kind)):
            for env_index, env in _items(container.get("env")):
                causes += _env_source_causes(env.get("valueFrom"), f"{path}.{kind}[{index}].env[{env_index}].valueFrom")
    return causes


def annotation_causes(annotations: Any, path: str) -> list[Cause]:
    """ValidateAnnotations: each key a qualified name (in lower case), keys and values together at most 256 KiB."""
    if not isinstance(annotations, dict):
        return []
    causes = []
    for key in annotations:
        prefix, _, name = str(key).lower().rpartition("/")
        if not _QUALIFIED_NAME.match(name) or len(name) > 63 or "/" in prefix or (
                prefix and (not _DNS_SUBDOMAIN.match(prefix) or len(prefix) > 253)) or str(key).startswith("/"):
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {format_value(key)}: name part must consist of "
                                "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                                "character", path))
    size = sum(len(str(k).encode()) + len(v.encode() if isinstance(v, str) else b"") for k, v in annotations.items())
    if size > ANNOTATIONS_LIMIT_B:
        causes.append(Cause("FieldValueTooLong", f"Too long: may not be more than {ANNOTATIONS_LIMIT_B} bytes", path))
    return causes


def _deletion_cost_causes(meta: Any, path: str) -> list[Cause]:
    """The pod-deletion-cost annotation of a Pod's or pod template's metadata (``path``: where its
    annotations are) must be a 32-bit integer."""
    cost = ((meta if isinstance(meta, dict) else {}).get("annotations") or {}).get(DELETION_COST)
    if not isinstance(cost, str) or valid_deletion_cost(cost):
        return []
    return [Cause("FieldValueInvalid", f"Invalid value: {format_value(cost)}: must be a 32bit integer",
                  f"{path}[{DELETION_COST}]")]


def _int_or_string(value: int | str) -> str:
    """An IntOrString as the real server prints a refused one (Go's %#v)."""
    if isinstance(value, str):
        return f"intstr.IntOrString{{Type:1, IntVal:0, StrVal:{format_value(value)}}}"
    return f'intstr.IntOrString{{Type:0, IntVal:{value}, StrVal:""}}'


def _percent(value: Any) -> int | None:
    """The number of a valid percentage string, else None."""
    return int(value[:-1]) if isinstance(value, str) and _PERCENT.match(value) else None


def _strategy_causes(strategy: Any) -> list[Cause]:
    """ValidateDeploymentStrategy's checks the schema cannot make: no rollingUpdate with Recreate, and a
    rolling update's maxUnavailable and maxSurge are counts or percentages (``^[0-9]+%$``) of at least 0, not
    both 0, and maxUnavailable at most 100%."""
    path = "spec.strategy.rollingUpdate"
    strategy = strategy if isinstance(strategy, dict) else {}
    rolling = strategy.get("rollingUpdate")
    if strategy.get("type") == "Recreate" and rolling is not None:
        return [Cause("FieldValueForbidden", "Forbidden: may not be specified when strategy `type` is 'Recreate'",
                      path)]
    if not isinstance(rolling, dict):
        return []
    causes = []
    values: dict[str, Any] = {name: rolling.get(name) for name in ("maxUnavailable", "maxSurge")}
    for name, value in values.items():
        if isinstance(value, str) and _percent(value) is None:
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {_int_or_string(value)}: {_PERCENT_ERROR}",
                                f"{path}.{name}"))
        elif isinstance(value, int) and value < 0:
            causes.append(Cause("FieldValueInvalid", f"Invalid value: {value}: must be greater than or equal to 0",
                                f"{path}.{name}"))
    unavailable = values["maxUnavailable"]
    if all(v == 0 or _percent(v) == 0 for v in values.values()):
        causes.append(Cause("FieldValueInvalid", f"Invalid value: {_int_or_string(unavailable)}: may not be 0 when "
                            "`maxSurge` is 0", f"{path}.maxUnavailable"))
    if (_percent(unavailable) or 0) > 100:
        causes.append(Cause("FieldValueInvalid", f"Invalid value: {_int_or_string(unavailable)}: must not be "
                            "greater than 100%", f"{path}.maxUnavailable"))
    return causes


def _deployment_causes(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    causes = _pod_spec_causes(template.get("spec") or {}, "spec.template.spec")
    template_meta = template.get("metadata")
    annotations = template_meta.get("annotations") if isinstance(template_meta, dict) else None
    causes += annotation_causes(annotations, "spec.template.metadata.annotations")
    causes += _deletion_cost_causes(template.get("metadata"), "spec.template.annotations")
    if obj.get("kind") == "Deployment":
        causes += _strategy_causes(spec.get("strategy"))
    selector = spec.get("selector")
    if isinstance(selector, dict):
        if not (selector.get("matchLabels") or selector.get("matchExpressions")):
            causes.append(Cause("FieldValueInvalid", "Invalid value: {}: empty selector is "
                                "invalid for deployment", "spec.selector"))
        else:
            labels = (template.get("metadata") or {}).get("labels") or {}
            if not label_matcher(selector_to_string(selector))({"metadata": {"labels": labels}}):
                causes.append(Cause("FieldValueInvalid", f"Invalid value: {format_value(labels)}:"
                                    " `selector` does not match template `labels`",
                                    "spec.template.metadata.labels"))
    return causes


def _secret_causes(obj: dict[str, Any]) -> list[Cause]:
    causes = []
    for key, value in (obj.get("data") or {}).items():
        try:
            base64.b64decode(value or "", validate=True)
        except (ValueError, TypeError):
            causes.append(Cause("FieldValueInvalid", "Invalid value: \"<secret contents "
                                "redacted>\": illegal base64 data", f"data[{key}]"))
    return causes


def validate_builtin(obj: dict[str, Any], strict: bool = False) -> list[Cause]:
    """Every reason the real server would refuse this built-in object."""
    causes = schema_causes(obj, strict)
    kind = obj.get("kind")
    if kind in ("Deployment", "ReplicaSet"):
        causes += _deployment_causes(obj)
    elif kind == "Pod":
        causes += _pod_spec_causes(obj.get("spec") or {}, "spec") + _pod_image_causes(obj.get("spec") or {})
        causes += _deletion_cost_causes(obj.get("metadata"), "metadata.annotations")
    elif kind == "Secret":
        causes += _secret_causes(obj)
    return causes


def apply_builtin_defaults(obj: dict[str, Any]) -> None:
    """Server-side defaults of the built-in kinds the operator and its tests read back."""
    kind = obj.get("kind")
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else None
    if kind == "Namespace":
        obj.setdefault("status", {}).setdefault("phase", "Active")
    elif kind in ("Deployment", "ReplicaSet") and spec is not None:
        spec.setdefault("replicas", 1)
        if kind == "Deployment":
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {
                "maxSurge": "25%", "maxUnavailable": "25%"}})
        _default_pod_spec((spec.get("template") or {}).get("spec"))
    elif kind == "Pod":
        _default_pod_spec(spec)
        obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif kind == "Service" and spec is not None:
        spec.setdefault("type", "ClusterIP")
        if spec.get("clusterIP") != "None":
            spec.setdefault("clusterIP", f"10.96.{random.randint(0, 255)}.{random.randint(1, 254)}")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None) or {}
        for key, value in string_data.items():
            obj.setdefault("data", {})[key] = base64.b64encode(str(value).encode()).decode()


def _default_pod_spec(spec: Any) -> None:
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    for container in spec.get("containers") or []:
        if isinstance(container, dict):
            latest = str(container.get("image", "")).endswith(":latest") or ":" not in str(
                container.get("image", "")).rsplit("/", 1)[-1]
            container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            for port in container.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
