"""The four PATCH formats of the Kubernetes API."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import jsonpointer
import yaml

from .errors import ApiError, bad_request

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)

# patchMergeKey of the built-in lists a strategic merge patch merges item by item.
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",),
    "env": ("name",), "volumes": ("name",), "volumeMounts": ("mountPath",),
    "ports": ("containerPort", "port"), "conditions": ("type",), "ownerReferences": ("uid",),
    "imagePullSecrets": ("name",), "hostAliases": ("ip",), "topologySpreadConstraints":
    ("topologyKey",), "containerStatuses": ("name",), "volumeDevices": ("devicePath",),
}


def parse_body(content_type: str, raw: bytes) -> Any:
    """Decode a patch body (JSON, or YAML for apply patches); 400 BadRequest if malformed."""
    try:
        if content_type == APPLY_PATCH:
            return yaml.safe_load(raw.decode())
        return json.loads(raw or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"error decoding patch: {exc}") from exc


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    """A strategic merge patch: a merge patch whose known lists of objects merge by key.

    Supports ``$patch: delete`` on list items and ``$patch: replace`` on maps; other
    directives (``$retainKeys``, ``$setElementOrder``) are dropped.
    """
    if isinstance(patch, list) and isinstance(target, list):
        return _merge_list(target, patch, field)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = strategic_merge_patch(result.get(key), value, key)
    return result


def _merge_list(target: list[Any], patch: list[Any], field: str) -> list[Any]:
    key = next((k for k in MERGE_KEYS.get(field, ())
                if patch and all(isinstance(i, dict) and k in i for i in patch)), None)
    if key is None and field not in MERGE_KEYS and patch and all(
            isinstance(i, dict) and "name" in i for i in patch):
        key = "name"
    if key is None:
        return [i for i in copy.deepcopy(patch) if not (isinstance(i, dict) and "$patch" in i)]
    result = copy.deepcopy(target)
    for item in patch:
        index = next((n for n, old in enumerate(result)
                      if isinstance(old, dict) and old.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append(strategic_merge_patch({}, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def _not_applied(detail: str) -> ApiError:
    """422 as the real server answers a JSON patch that does not apply: a fixed message, the reason in a cause (an
    UnexpectedServerResponse, as NewGenericServerResponse writes it)."""
    return ApiError(422, "the server rejected our request due to an error in our request",
                    details={"causes": [{"reason": "UnexpectedServerResponse", "message": detail}]})


def json_patch(target: dict[str, Any], operations: Any) -> dict[str, Any]:
    """RFC 6902 JSON patch, all or nothing: an operation that does not apply (a failed ``test``, a missing path) is
    422 Invalid naming it, as json-patch words it; a patch of the wrong form is 400."""
    if not isinstance(operations, list):
        raise bad_request("json patch must be a list of operations")
    result = target
    for op in operations:
        try:
            result = jsonpatch.apply_patch(result, [op])
        except jsonpatch.JsonPatchTestFailed as exc:
            raise _not_applied(f"testing value {op.get('path')} failed: test failed") from exc
        except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as exc:
            raise _not_applied(f"{op.get('op')} operation does not apply: doc is missing path: {op.get('path')}: "
                               "missing value") from exc
        except (jsonpatch.InvalidJsonPatch, TypeError, KeyError, AttributeError) as exc:
            raise bad_request(f"invalid json patch: {exc}") from exc
    return copy.deepcopy(result) if result is target else result


def apply_patch(content_type: str, target: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply a patch of the given media type to an object (a deep copy is returned)."""
    if content_type == JSON_PATCH:
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise bad_request("patch body must be a JSON object")
    if content_type == STRATEGIC_PATCH:
        return strategic_merge_patch(target, patch)
    return merge_patch(target, patch)
