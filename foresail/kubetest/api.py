"""The Kubernetes API semantics: CRUD verbs, subresources, admission, finalizers and GC.

Everything runs on one asyncio loop without awaiting, so each verb is atomic.
"""

from __future__ import annotations

import copy
import datetime
import random
import re
import uuid
from dataclasses import dataclass
from typing import Any

from . import builtin_admission, cel, crds, schema
from .errors import ApiError, Cause, already_exists, bad_request, conflict, format_value, invalid, not_found
from .patch import APPLY_PATCH, STRATEGIC_PATCH, apply_patch
from .resources import Registry, ResourceType
from .selectors import field_matcher, label_matcher, selector_to_string
from .store import Obj, Store, name_of, namespace_of

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# the API server's name rule per kind (NameIsDNSSubdomain unless listed): pattern, longest name, what it says
_NAME_RULES = {
    "Namespace": (_DNS_LABEL, 63, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                                  "or '-', and must start and end with an alphanumeric character"),
    "Service": (_DNS_1035, 63, "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
                               "with an alphabetic character, and end with an alphanumeric character"),
}
_SUBDOMAIN_RULE = (_DNS_SUBDOMAIN, 253, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                                        "characters, '-' or '.', and must start and end with an alphanumeric character")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_POLICIES = ("Foreground", "Background", "Orphan")
_CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")


@dataclass
class ApiConfig:
    """Server behaviours that tests may switch."""

    event_log_size: int = 1000
    validate_builtins: bool = True


def now(later_s: float = 0.0) -> str:
    """The current time (plus ``later_s``) as the API writes timestamps (RFC 3339, seconds, UTC)."""
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=later_s)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _later(stamp: str, seconds: float) -> str:
    """An RFC 3339 timestamp moved by ``seconds``."""
    moment = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")) + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_grace_period(pod: Obj, options: dict[str, Any]) -> int:
    """Seconds a DELETE leaves a Pod to shut down, as the real pod strategy decides: the request's
    ``gracePeriodSeconds``, else the pod's ``terminationGracePeriodSeconds`` (default 30); 0, a removal
    at once, for a pod no node runs (not scheduled, or finished)."""
    spec = pod.get("spec") or {}
    if not spec.get("nodeName") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return 0
    requested = options.get("gracePeriodSeconds")
    try:
        return max(0, int(spec.get("terminationGracePeriodSeconds", 30) if requested is None else requested))
    except (TypeError, ValueError):
        raise bad_request(f"gracePeriodSeconds must be an integer, not {requested!r}") from None


def propagation_policy(options: dict[str, Any]) -> str:
    """How a DELETE treats the dependents: ``propagationPolicy``, else the deprecated ``orphanDependents`` (true:
    Orphan, false: Background), else Background; 422 Invalid, as the real server validates DeleteOptions, for an
    unknown policy or both options set."""
    policy, orphan = options.get("propagationPolicy"), options.get("orphanDependents")
    causes = []
    if policy is not None and orphan is not None:
        causes.append(Cause("FieldValueInvalid", f'Invalid value: "{policy}": orphanDependents and '
                            "deletionPropagation cannot be both set", "propagationPolicy"))
    if policy not in (None, *_POLICIES):
        causes.append(Cause("FieldValueNotSupported", f'Unsupported value: "{policy}": supported values: '
                            + ", ".join(f'"{p}"' for p in (*_POLICIES, "nil")), "propagationPolicy"))
    if causes:
        raise invalid("DeleteOptions", "meta.k8s.io", "", causes)
    if orphan is not None:
        return "Orphan" if orphan else "Background"
    return policy or "Background"


def random_suffix(length: int = 5) -> str:
    """Random characters as the real server appends for ``generateName``."""
    return "".join(random.choice(_NAME_CHARS) for _ in range(length))


def get_path(obj: Any, path: str) -> Any:
    """The value at a dotted path like ``.spec.replicas`` (None when absent)."""
    for part in [p for p in path.split(".") if p]:
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    """Set the value at a dotted path, creating objects on the way."""
    parts = [p for p in path.split(".") if p]
    for part in parts[:-1]:
        obj = obj.setdefault(part, {})
    obj[parts[-1]] = value


def _written(rt: ResourceType, old: Obj, new: Obj, subresource: str) -> Obj:
    """What an update of ``old`` to ``new`` writes before admission: through the status subresource only the
    status changes; through the object everything but the status (where the type has the subresource); the
    fields the server owns (uid, timestamps, generation, resourceVersion) stay as they were."""
    if subresource == "status":
        result = copy.deepcopy(old)
        if "status" in new:
            result["status"] = new["status"]
        else:
            result.pop("status", None)
    else:
        result = copy.deepcopy(new)
        if rt.status:
            result.pop("status", None)
            if "status" in old:
                result["status"] = copy.deepcopy(old["status"])
    meta, meta_old = result["metadata"], old["metadata"]
    for key in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                "generation", "resourceVersion"):
        meta.pop(key, None)
        if key in meta_old:
            meta[key] = meta_old[key]
    return result


def _without(obj: Obj, *fields: str) -> Obj:
    return {k: v for k, v in obj.items() if k not in fields}


def _changes_generation(rt: ResourceType, old: Obj, new: Obj) -> bool:
    """Whether an update counts as a new generation: a change of anything but the metadata and the status (the
    spec); for a Deployment a change of its annotations too, as its strategy counts them (they are copied to its
    ReplicaSets)."""
    spec_fields = ("metadata", "status") if rt.status else ("metadata",)
    if _without(new, *spec_fields) != _without(old, *spec_fields):
        return True
    return rt.key == ("apps", "deployments") and \
        (new["metadata"].get("annotations") or {}) != (old["metadata"].get("annotations") or {})


def _is_crd(rt: ResourceType) -> bool:
    return rt.key == _CRD_KEY


def _instances_key(crd: Obj) -> tuple[str, str]:
    """The storage key of a CRD's custom resources."""
    return crd["spec"]["group"], crd["spec"]["names"]["plural"]


def _metadata_causes(rt: ResourceType, meta: dict[str, Any]) -> list[Cause]:
    causes = []
    name = meta.get("name", "")
    pattern, limit, rule = _NAME_RULES.get(rt.kind, _SUBDOMAIN_RULE)
    if not isinstance(name, str) or not pattern.match(name):
        causes.append(Cause("FieldValueInvalid", f'Invalid value: "{name}": {rule}', "metadata.name"))
    elif len(name) > limit:
        causes.append(Cause("FieldValueInvalid", f'Invalid value: "{name}": must be no more than {limit} characters',
                            "metadata.name"))
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, label = key.rpartition("/")
        if not _LABEL_NAME.match(label) or len(label) > 63 or (
                prefix and not _DNS_SUBDOMAIN.match(prefix)):
            causes.append(Cause("FieldValueInvalid", f'Invalid value: "{key}": name part must '
                                "consist of alphanumeric characters, '-', '_' or '.'",
                                "metadata.labels"))
        if not isinstance(value, str) or not _LABEL_VALUE.match(value) or len(value) > 63:
            causes.append(Cause("FieldValueInvalid", f'Invalid value: "{value}": a valid label '
                                "must be an empty string or consist of alphanumeric characters, "
                                "'-', '_' or '.', and must start and end with an alphanumeric "
                                "character (at most 63 characters)", f"metadata.labels[{key}]"))
    for key, value in (meta.get("annotations") or {}).items():
        if not isinstance(value, str):
            causes.append(Cause("FieldValueInvalid", "Invalid value: annotation values must be "
                                "strings", f"metadata.annotations[{key}]"))
    return causes + builtin_admission.annotation_causes(meta.get("annotations"), "metadata.annotations")


class Api:
    """The resource verbs of one server (its registry, store and admission)."""

    def __init__(self, config: ApiConfig | None = None) -> None:
        self.config = config or ApiConfig()
        self.registry = Registry()
        self.store = Store(self.config.event_log_size)
        ns_type = self.resource("", "v1", "namespaces")
        for name in INITIAL_NAMESPACES:
            self.create(ns_type, "", {"metadata": {"name": name}})

    # -- lookup --------------------------------------------------------------------------

    def resource(self, group: str, version: str, plural: str) -> ResourceType:
        """The served type, or 404 NotFound."""
        rt = self.registry.get(group, version, plural)
        if rt is None:
            raise ApiError(404, "the server could not find the requested resource",
                           details={"group": group, "kind": plural})
        return rt

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        """One object, or 404 NotFound."""
        obj = self.store.get(rt.key, namespace if rt.namespaced else "", name)
        if obj is None:
            raise not_found(rt.plural, rt.group, name)
        return self._present(rt, obj)

    def list(self, rt: ResourceType, namespace: str | None, label_selector: str | None = None,
             field_selector: str | None = None) -> Obj:
        """A ``<Kind>List`` of the matching objects, with the list's resourceVersion."""
        matches_labels = label_matcher(label_selector)
        matches_fields = field_matcher(field_selector, rt.selectable_fields())
        scope = (namespace or None) if rt.namespaced else None
        items = [self._present(rt, o) for o in self.store.objects(rt.key, scope)
                 if matches_labels(o) and matches_fields(o)]
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self.store.resource_version)}, "items": items}

    def _present(self, rt: ResourceType, obj: Obj) -> Obj:
        """An object as served at ``rt``'s version (CR versions share storage; a custom resource pruned and
        defaulted by that version's schema, as the real server does on reading from storage)."""
        if rt.custom:
            schema.on_read(obj, rt.schema)
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        return obj

    # -- create --------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str, body: Any, strict: bool = False) -> Obj:
        """Create an object (201 semantics): fills server-managed metadata, admits, stores."""
        obj = self._check_body(rt, namespace, body)
        meta = obj["metadata"]
        if rt.namespaced:  # the NamespaceLifecycle admission, before the name is generated
            self._require_namespace(rt, meta["namespace"], str(meta.get("name") or ""))
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(rt.kind, rt.group, "", [Cause(
                    "FieldValueRequired", "Required value: name or generateName is required",
                    "metadata.name")])
            meta["name"] = meta["generateName"] + random_suffix()
        crd = self.store.get(_CRD_KEY, "", f"{rt.plural}.{rt.group}") if rt.custom else None
        if crd and crd["metadata"].get("deletionTimestamp"):
            raise ApiError(405, "create not allowed while custom resource definition is terminating")
        # the storage's check: a version it can parse ("0" and garbage pass), answered as an error without a Status
        # of its own (500, no reason)
        if re.fullmatch(r"[0-9]+", str(meta.get("resourceVersion") or "")) and 0 < int(meta["resourceVersion"]) < 2**64:
            raise ApiError(500, "resourceVersion should not be set on objects to be created", "Unknown")
        if self.store.get(rt.key, namespace_of(obj), meta["name"]) is not None:
            raise already_exists(rt.plural, rt.group, meta["name"])
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(key, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        if rt.status:  # status is written through its subresource; a built-in type's Go struct is encoded
            obj.pop("status", None)  # even when empty (`status: {}`), a custom resource's unstructured one is not
            if not rt.custom:
                obj["status"] = {}
        obj = self._admit(rt, obj, None, strict)
        if _is_crd(rt):
            obj = crds.establish(self.registry, obj, now())
        return self._present(rt, self.store.put(rt.key, obj, None))

    def _check_body(self, rt: ResourceType, namespace: str, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format: expected an "
                              "object")
        obj = copy.deepcopy(body)
        if obj.get("kind", rt.kind) != rt.kind:
            raise bad_request(f"the kind in the data ({obj.get('kind')}) does not match the "
                              f"expected kind ({rt.kind})")
        if obj.get("apiVersion", rt.api_version) != rt.api_version:
            raise bad_request(f"the API version in the data ({obj.get('apiVersion')}) does not "
                              f"match the expected API version ({rt.api_version})")
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        return obj

    def _require_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        """The NamespaceLifecycle admission of a create: 404 without the namespace, 403 (cause NamespaceTerminating)
        while it is being deleted."""
        ns = self.store.get(("", "namespaces"), "", namespace)
        if ns is None:
            raise not_found("namespaces", "", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            what = (f"{rt.plural}.{rt.group}" if rt.group else rt.plural) + (f' "{name}"' if name else "")
            raise ApiError(403, f"{what} is forbidden: unable to create new content in namespace {namespace} because "
                                "it is being terminated", details={
                                    "name": name, "group": rt.group, "kind": rt.plural, "causes": [
                                        Cause("NamespaceTerminating", f"namespace {namespace} is being terminated",
                                              "metadata.namespace").to_dict()]})

    def _admit(self, rt: ResourceType, obj: Obj, old: Obj | None, strict: bool) -> Obj:
        """Default and validate an object about to be stored; 422 Invalid lists every cause."""
        causes = _metadata_causes(rt, obj["metadata"])
        if rt.custom:
            schema.prune(obj, rt.schema, root=True)
            schema.apply_defaults(obj, rt.schema)
            causes += schema.validate(obj, rt.schema)
            if not causes:
                causes += cel.validate_rules(obj, old, rt.schema)
        else:
            builtin_admission.apply_builtin_defaults(obj)
            if self.config.validate_builtins:
                causes += builtin_admission.validate_builtin(obj, strict)
            if _is_crd(rt):
                causes += crds.validate_crd(obj)
        if causes:
            raise invalid(rt.kind, rt.group, name_of(obj), causes)
        return obj

    # -- update --------------------------------------------------------------------------

    def replace(self, rt: ResourceType, namespace: str, name: str, body: Any,
                subresource: str = "", strict: bool = False) -> Obj:
        """PUT: replace an object (or only its status with ``subresource='status'``)."""
        new = self._check_body(rt, namespace, body)
        if new["metadata"].get("name", name) != name:
            raise bad_request(f"the name of the object ({new['metadata'].get('name')}) does not "
                              f"match the name on the URL ({name})")
        new["metadata"]["name"] = name
        old = self.get(rt, namespace, name)
        uid = new["metadata"].get("uid")
        if uid and uid != old["metadata"]["uid"]:  # the real server takes a PUT's uid as a precondition
            raise ApiError(409, f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                                f"{old['metadata']['uid']}", "Conflict")
        if rt.custom and not new["metadata"].get("resourceVersion"):  # no unconditional update of a custom resource
            raise invalid(rt.plural, rt.group, name, [Cause("FieldValueInvalid", "Invalid value: 0x0: must be "
                                                            "specified for an update", "metadata.resourceVersion")])
        return self.update(rt, old, new, subresource, strict)

    def patch(self, rt: ResourceType, namespace: str, name: str, content_type: str, patch: Any,
              subresource: str = "", strict: bool = False,
              field_manager: str | None = None) -> tuple[Obj, bool]:
        """PATCH in any of the four formats; returns (object, created by an apply patch)."""
        if content_type == STRATEGIC_PATCH and rt.custom:
            raise ApiError(415, "the body of the request was in an unknown format - accepted "
                                "media types include: application/json-patch+json, "
                                "application/merge-patch+json, application/apply-patch+yaml")
        if content_type == APPLY_PATCH and not field_manager:
            raise bad_request("PATCH /apply requires fieldManager to be set")
        try:
            old = self.get(rt, namespace, name)
        except ApiError as exc:
            if content_type != APPLY_PATCH or exc.code != 404 or subresource:
                raise
            if not isinstance(patch, dict):
                raise bad_request("patch body must be a JSON object") from None
            body = copy.deepcopy(patch)
            meta = body.setdefault("metadata", {})
            if isinstance(meta, dict) and meta.setdefault("name", name) != name:
                raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL "
                                  f"({name})") from None
            return self.create(rt, namespace, body, strict), True
        new = apply_patch(content_type, old, patch)
        if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
            raise bad_request("the patch left the object without metadata")
        if new["metadata"].get("name") != name:
            raise bad_request("the name of the object may not be changed by a patch")
        new = self._check_body(rt, namespace, new)
        return self.update(rt, old, new, subresource, strict), False

    def update(self, rt: ResourceType, old: Obj, new: Obj, subresource: str = "",
               strict: bool = False) -> Obj:
        """Store ``new`` over ``old``: preconditions, subresource isolation, generation,
        admission, finalizers. A no-op update stores nothing and keeps the resourceVersion."""
        meta_old, meta_new = old["metadata"], new["metadata"]
        if meta_new.get("resourceVersion") and meta_new["resourceVersion"] != \
                meta_old["resourceVersion"]:
            raise conflict(rt.plural, rt.group, meta_old["name"])
        if meta_new.get("uid") and meta_new["uid"] != meta_old["uid"]:
            raise invalid(rt.kind, rt.group, meta_old["name"], [Cause(
                "FieldValueInvalid", f"Invalid value: {format_value(meta_new['uid'])}: field is immutable",
                "metadata.uid")])
        result = _written(rt, old, new, subresource)
        meta = result["metadata"]
        if meta_old.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(meta_old.get("finalizers") or [])
            if added:
                raise invalid(rt.kind, rt.group, meta_old["name"], [Cause(
                    "FieldValueForbidden", "Forbidden: no new finalizers can be added if the "
                    "object is being deleted", "metadata.finalizers")])
        if subresource != "status":
            result = self._admit(rt, result, old, strict)
        else:
            result = self._admit_status(rt, result, old)
        if _changes_generation(rt, old, result):
            meta["generation"] = int(meta_old.get("generation") or 0) + 1
        if _is_crd(rt) and subresource != "status":
            result = crds.establish(self.registry, result, now())
        if result == old:
            return self._present(rt, old)
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and \
                not meta.get("deletionGracePeriodSeconds") and \
                not (_is_crd(rt) and self.store.stored(_instances_key(result))):  # a CRD waits for its instances
            return self._remove(rt, result)
        return self._present(rt, self.store.put(rt.key, result, old))

    def _admit_status(self, rt: ResourceType, obj: Obj, old: Obj) -> Obj:
        if rt.custom:
            return self._admit(rt, obj, old, False)
        if self.config.validate_builtins:
            causes = builtin_admission.schema_causes(obj)
            if causes:
                raise invalid(rt.kind, rt.group, name_of(obj), causes)
        return obj

    # -- scale ---------------------------------------------------------------------------

    def get_scale(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        """The ``autoscaling/v1`` Scale of an object whose type has a scale subresource."""
        return self._scale_of(rt, self.get(rt, namespace, name))

    def _scale_of(self, rt: ResourceType, obj: Obj) -> Obj:
        spec = rt.scale
        if spec is None:
            raise not_found(f"{rt.plural}/scale", rt.group, name_of(obj))
        meta = obj["metadata"]
        if spec.label_selector_path:
            selector = get_path(obj, spec.label_selector_path) or ""
        else:
            selector = selector_to_string(get_path(obj, ".spec.selector"))
        status: dict[str, Any] = {"replicas": int(get_path(obj, spec.status_replicas_path) or 0)}
        if selector:
            status["selector"] = selector
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                              "creationTimestamp") if k in meta},
            "spec": {"replicas": int(get_path(obj, spec.spec_replicas_path) or 0)},
            "status": status,
        }

    def update_scale(self, rt: ResourceType, namespace: str, name: str, body: Any = None,
                     content_type: str | None = None, patch: Any = None) -> Obj:
        """PUT (``body``) or PATCH (``content_type``, ``patch``) the Scale: writes only replicas."""
        obj = self.get(rt, namespace, name)
        current = self._scale_of(rt, obj)
        scale = apply_patch(content_type, current, patch) if content_type else body
        if not isinstance(scale, dict):
            raise bad_request("the body of the request was in an unknown format")
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise invalid("Scale", "autoscaling", name, [Cause(
                "FieldValueInvalid", f"Invalid value: {replicas}: must be greater than or equal "
                "to 0", "spec.replicas")])
        wanted_rv = (scale.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != obj["metadata"]["resourceVersion"]:
            raise conflict(f"{rt.plural}", rt.group, name)
        new = copy.deepcopy(obj)
        set_path(new, rt.scale.spec_replicas_path, replicas)  # type: ignore[union-attr]
        new["metadata"].pop("resourceVersion", None)
        return self._scale_of(rt, self.update(rt, obj, new))

    # -- delete --------------------------------------------------------------------------

    def delete(self, rt: ResourceType, namespace: str, name: str,
               options: dict[str, Any] | None = None) -> Obj:
        """DELETE: honours preconditions, finalizers and propagationPolicy (GC of dependents)."""
        options = options or {}
        obj = self.get(rt, namespace, name)
        pre = options.get("preconditions") or {}
        meta = obj["metadata"]
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise ApiError(409, f"Precondition failed: UID in precondition: {pre['uid']}, UID in "
                                f"object meta: {meta['uid']}", "Conflict")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise ApiError(409, f"Precondition failed: ResourceVersion in precondition: "
                                f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                f"{meta['resourceVersion']}", "Conflict")
        policy = propagation_policy(options)
        if rt.kind == "Namespace" and not rt.group:
            return self._delete_namespace(rt, obj)
        if _is_crd(rt):
            return self._delete_crd(rt, obj)
        if rt.kind == "Pod" and not rt.group:
            grace, pending = pod_grace_period(obj, options), meta.get("deletionGracePeriodSeconds")
            if pending and (options.get("gracePeriodSeconds") is None or grace >= pending):
                return obj  # a graceful deletion is pending: only a shorter grace period changes it
            if grace:
                return self._delete_gracefully(rt, obj, grace)
        if policy != "Background":  # the real server's GC acts on its foregroundDeletion or orphan finalizer at once
            self._collect_dependents(meta["uid"], orphan=policy == "Orphan")
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp") and not meta.get("deletionGracePeriodSeconds"):
                return obj
            new = copy.deepcopy(obj)
            new["metadata"].update(deletionTimestamp=now(), deletionGracePeriodSeconds=0)
            if not meta.get("deletionTimestamp"):  # markAsDeleting counts the deletion as a change of the object
                new["metadata"]["generation"] = int(meta.get("generation") or 0) + 1
            return self._present(rt, self.store.put(rt.key, new, obj))
        return self._remove(rt, obj)

    def _delete_gracefully(self, rt: ResourceType, obj: Obj, grace: int) -> Obj:
        """A Pod's graceful deletion: ``deletionTimestamp`` (now + ``grace``) and
        ``deletionGracePeriodSeconds`` are set, the generation bumped, and the object stays for its
        kubelet to remove (a DELETE with grace 0) once its containers stop. On a pod already
        terminating, a shorter grace period counts from when its deletion began."""
        meta = obj["metadata"]
        new = copy.deepcopy(obj)
        if meta.get("deletionTimestamp"):
            new["metadata"].update(deletionGracePeriodSeconds=grace, deletionTimestamp=_later(
                meta["deletionTimestamp"], grace - int(meta["deletionGracePeriodSeconds"])))
        else:
            new["metadata"].update(deletionTimestamp=now(grace), deletionGracePeriodSeconds=grace,
                                   generation=int(meta.get("generation") or 0) + 1)
        return self._present(rt, self.store.put(rt.key, new, obj))

    def delete_collection(self, rt: ResourceType, namespace: str | None, label_selector: str | None,
                          field_selector: str | None, options: dict[str, Any] | None = None) -> Obj:
        """DELETE on a collection: deletes every matching object with the same DeleteOptions; returns the list
        deleted."""
        listed = self.list(rt, namespace, label_selector, field_selector)
        listed["items"] = [self.delete(rt, namespace_of(o), name_of(o), options) for o in listed["items"]]
        return listed

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        gone = self.store.remove(rt.key, namespace_of(obj), name_of(obj))
        if gone is None:
            return obj
        if _is_crd(rt):
            crds.unregister(self.registry, gone)
        self._collect_dependents(gone["metadata"]["uid"], orphan=False)
        if rt.custom:
            self._finish_crd(f"{rt.plural}.{rt.group}")
        if namespace_of(gone):
            self._finish_namespace(namespace_of(gone))
        return self._present(rt, gone)

    def _type_of_key(self, key: tuple[str, str]) -> ResourceType | None:
        return next((rt for rt in self.registry.all() if rt.key == key), None)

    def _collect_dependents(self, owner_uid: str, orphan: bool) -> None:
        """Garbage-collect (or, with ``orphan``, release) the objects ``owner_uid`` owned."""
        for key in list(self.store.keys()):
            rt = self._type_of_key(key)
            if rt is None:
                continue
            for dependent in self.store.objects(key):
                refs = dependent["metadata"].get("ownerReferences") or []
                if not any(r.get("uid") == owner_uid for r in refs):
                    continue
                if self.store.get(key, namespace_of(dependent), name_of(dependent)) is None:
                    continue
                others = [r for r in refs if r.get("uid") != owner_uid]
                if orphan or any(self.store.locate_uid(r.get("uid", "")) for r in others):
                    new = copy.deepcopy(dependent)
                    new["metadata"]["ownerReferences"] = others
                    if not others:
                        del new["metadata"]["ownerReferences"]
                    self.update(rt, dependent, new)
                else:
                    self.delete(rt, namespace_of(dependent), name_of(dependent))

    def _delete_namespace(self, rt: ResourceType, ns: Obj) -> Obj:
        name = name_of(ns)
        if not ns["metadata"].get("deletionTimestamp"):
            new = copy.deepcopy(ns)
            new["metadata"].update(deletionTimestamp=now(), deletionGracePeriodSeconds=0)
            new.setdefault("status", {})["phase"] = "Terminating"
            self.store.put(rt.key, new, ns)
        for key in list(self.store.keys()):
            served = self._type_of_key(key)
            if served is None or not served.namespaced:
                continue
            for obj in self.store.objects(key, name):
                if self.store.get(key, name, name_of(obj)) is not None:
                    self.delete(served, name, name_of(obj))
        self._finish_namespace(name)
        remaining = self.store.get(rt.key, "", name)
        return self._present(rt, remaining or ns)

    def _delete_crd(self, rt: ResourceType, crd: Obj) -> Obj:
        """A CRD's DELETE as its finalizer controller carries it out: the CRD is marked for deletion, each of its
        custom resources deleted (their finalizers honoured, their dependents collected), and the CRD goes once
        none is left (and it has no finalizers)."""
        if not crd["metadata"].get("deletionTimestamp"):
            new = copy.deepcopy(crd)
            new["metadata"].update(deletionTimestamp=now(), deletionGracePeriodSeconds=0)
            crd = self.store.put(rt.key, new, crd)
        key = _instances_key(crd)
        served = self._type_of_key(key)
        if served is not None:
            for obj in self.store.objects(key):
                if self.store.get(key, namespace_of(obj), name_of(obj)) is not None:
                    self.delete(served, namespace_of(obj), name_of(obj))
        self._finish_crd(name_of(crd))
        return self._present(rt, self.store.get(rt.key, "", name_of(crd)) or crd)

    def _finish_crd(self, name: str) -> None:
        """Remove a CRD being deleted once none of its custom resources is left and it has no finalizers."""
        crd = self.store.get(_CRD_KEY, "", name)
        if crd is None or not crd["metadata"].get("deletionTimestamp") or crd["metadata"].get("finalizers") or \
                self.store.stored(_instances_key(crd)):
            return
        self._remove(self.resource(_CRD_KEY[0], "v1", _CRD_KEY[1]), crd)

    def _finish_namespace(self, name: str) -> None:
        """Remove a terminating namespace once it holds nothing and has no finalizers."""
        ns = self.store.get(("", "namespaces"), "", name)
        if ns is None or not ns["metadata"].get("deletionTimestamp") or \
                ns["metadata"].get("finalizers"):
            return
        if any(self.store.objects(key, name) for key in self.store.keys()
               if key != ("", "namespaces")):
            return
        self.store.remove(("", "namespaces"), "", name)
