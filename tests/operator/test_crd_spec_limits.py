"""Specs the LLMDeployment schema used to accept that the operator could not act on: a forecast horizon past
a day (a decision with a schedule then overflowed or counted windows for seconds, holding the operator's
event loop), pod label or annotation keys Kubernetes refuses (the operator then reported InvalidSpec
instead of `kubectl apply` failing), and placement kube-apiserver refuses in the Deployment (a required node
affinity without a term, two spread constraints of the same topologyKey and whenUnsatisfiable:
pkg/apis/core/validation; the operator then reported ReconcileFailed), and a served model name or revision
starting with '-' (the server read it as an option: a crash loop). The CRD refuses them naming the
field, `parse_spec` too (an operator newer than the CRD installed), and the valid neighbours are accepted and
planned into a Deployment the API test server accepts: an annotation key's prefix may have capitals, as
Kubernetes checks it in lower case.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator

import pytest

from foresail.kubetest.testing import start_apiserver
from foresail_operator.spec import SpecError, parse_spec
from tests.helpers import KubeServer
from tests.operator.advisory import decisions
from tests.operator.conftest import assert_applies_and_plans, doc, post
from tests.reliability.conftest import install_crds
from tests.reliability.support import LLMDS

_names = itertools.count()
HORIZON = "spec.autoscaling.forecast.horizon"
HOURLY = {"name": "hourly", "start": "*:00", "end": "*:10", "minReplicas": 2}
REQUIRED = "spec.resources.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
SPREAD = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}

# id: (spec fields, the field a refusal names, words of the message)
REFUSED: dict[str, tuple[dict[str, Any], str, str]] = {
    "horizon-past-a-day-in-minutes": ({"autoscaling": {"forecast": {"horizon": "1441m"}}}, HORIZON,
                                      "at most a day (86400s or 1440m)"),
    "horizon-past-a-day-in-seconds": ({"autoscaling": {"forecast": {"horizon": "86401s"}}}, HORIZON,
                                      "at most a day"),
    "horizon-past-a-datetime": ({"autoscaling": {"forecast": {"horizon": "99999999999999m"}}}, HORIZON,
                                "at most a day"),
    # a YAML block scalar's newline: Python's `$` matched before it, and the operator failed reading the horizon
    # the pattern's $ ends the text, as Go's does (the API test server's Python $ let it through to spec.py)
    "horizon-with-a-newline": ({"autoscaling": {"forecast": {"horizon": "5m\n"}}}, HORIZON, "should match"),
    "label-key-with-a-space": ({"podMetadata": {"labels": {"cost center": "ml"}}}, "spec.podMetadata.labels",
                               "each podMetadata.labels key must be a label key"),
    "label-key-name-past-63": ({"podMetadata": {"labels": {"example.com/" + "k" * 64: "x"}}},
                               "spec.podMetadata.labels", "each podMetadata.labels key must be a label key"),
    "label-key-capital-prefix": ({"podMetadata": {"labels": {"Example.com/team": "ml"}}}, "spec.podMetadata.labels",
                                 "each podMetadata.labels key must be a label key"),
    "annotation-key-two-slashes": ({"podMetadata": {"annotations": {"a/b/c": "x"}}}, "spec.podMetadata.annotations",
                                   "each podMetadata.annotations key must be an annotation key"),
    "annotation-key-with-a-space": ({"podMetadata": {"annotations": {"owner team": "ml"}}},
                                    "spec.podMetadata.annotations", "must be an annotation key"),
    "node-affinity-required-without-a-term": ({"resources": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}}},
        f"{REQUIRED}.nodeSelectorTerms", "1"),
    "spread-constraints-repeated": ({"resources": {"topologySpreadConstraints": [
        SPREAD, {**SPREAD, "maxSkew": 2}]}}, "spec.resources.topologySpreadConstraints",
        "the same topologyKey and whenUnsatisfiable"),
    # passed to the server as `--served-model-name -x` or `--revision --help`: argparse reads it as an option, and
    # the pod crash-loops
    "served-model-name-like-an-option": ({"model": {"source": "org/name", "servedModelName": "-x"}},
                                         "spec.model.servedModelName", "must not start with '-'"),
    "revision-like-an-option": ({"model": {"source": "org/name", "revision": "--help"}}, "spec.model.revision",
                                "must not start with '-'"),
}

ACCEPTED: dict[str, dict[str, Any]] = {
    "horizon-a-day-in-minutes": {"autoscaling": {"forecast": {"horizon": "1440m"}}},
    "horizon-a-day-in-seconds": {"autoscaling": {"forecast": {"horizon": "86400s"}}},
    "horizon-five-minutes": {"autoscaling": {"forecast": {"horizon": "0005m"}}},
    "labels": {"podMetadata": {"labels": {"example.com/team": "ml", "Cost_Center.v2": "a1"}}},
    "annotation-key-capital-prefix": {"podMetadata": {"annotations": {"Example.COM/Owner": "ml team",
                                                                      "sidecar.istio.io/inject": "false"}}},
    "node-affinity-required-with-a-term": {"resources": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}]}}}}},
    "spread-constraints-of-two-pairs": {"resources": {"topologySpreadConstraints": [
        SPREAD, {**SPREAD, "whenUnsatisfiable": "DoNotSchedule", "maxSkew": 2},
        {**SPREAD, "topologyKey": "kubernetes.io/hostname"}]}},
    "served-model-name-and-revision-with-a-dash-inside": {"model": {"source": "org/name", "servedModelName": "my-x-",
                                                                   "revision": "v2-rc1"}},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeServer]:
    """One API test server for the module with the CRDs of crds/ (no pods: only admission is exercised)."""
    with start_apiserver(tmp_path_factory.mktemp("crd-spec-limits"), simulate_pods=False) as srv:
        yield KubeServer(srv, install_crds(srv))


def spec_with(fields: dict[str, Any]) -> dict[str, Any]:
    return {"model": {"source": "org/name"}, **fields}


@pytest.mark.parametrize("case", REFUSED)
def test_the_crd_refuses_them_naming_the_field(server, case):
    fields, field, words = REFUSED[case]
    name = f"refused-{next(_names)}"
    rsp = post(server, LLMDS, doc(name, spec_with(fields)))
    if rsp.status_code == 201:
        server.kube.delete(f"{LLMDS}/{name}")
    assert rsp.status_code == 422, f"{case}: accepted ({rsp.status_code})"
    message = rsp.json()["message"]
    assert field in message and words in message, f"{case}: {message!r} does not name {field} with {words!r}"


@pytest.mark.parametrize("case", REFUSED)
def test_parse_spec_refuses_them_too_naming_the_field(case):
    fields, field, _words = REFUSED[case]
    with pytest.raises(SpecError) as refused:
        parse_spec(spec_with(fields))
    assert str(refused.value).startswith(field), f"{case}: {refused.value} does not start with {field}"


@pytest.mark.parametrize("case", ACCEPTED)
def test_the_valid_neighbours_are_accepted_and_planned_into_a_valid_deployment(server, case):
    assert_applies_and_plans(server, f"accepted-{next(_names)}", spec_with({**ACCEPTED[case], "autoscaling": {
        "mode": "off", **ACCEPTED[case].get("autoscaling", {})}}), case)


async def test_a_day_ahead_with_an_hourly_schedule_holds_its_floor():
    """At the longest horizon the schedule's windows of the coming day are all counted: the floor holds."""
    spec = parse_spec(spec_with({"minReplicas": 1, "autoscaling": {
        "mode": "advisory", "forecast": {"horizon": "1440m"}, "schedules": [{**HOURLY, "minReplicas": 7}]}}))
    assert spec.autoscaling.horizon_s(None) == 86400
    _, decision = await decisions(spec, values={"requests": "2"})
    assert decision.replicas == 7 and "schedule hourly" in decision.reason, decision.reason

