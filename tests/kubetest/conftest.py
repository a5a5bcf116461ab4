"""Fixtures: one API test server process for the whole package, a namespace per test."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from foresail.kubetest.testing import ApiServerProcess, start_apiserver
from tests.kubetest.helpers import WIDGET_CRD, Kube


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    """One server process (simulated pods, fast bookmarks) for the whole package."""
    directory = tmp_path_factory.mktemp("apiserver")
    with start_apiserver(directory, simulate_pods=True, ready_delay_s=0.3,
                         extra_args=("--bookmark-interval", "0.3")) as process:
        yield process


@pytest.fixture(scope="session")
def kube(server: ApiServerProcess) -> Kube:
    """Plain HTTP access to the session's server."""
    return Kube(server.url)


@pytest.fixture(scope="session")
def widgets(kube: Kube) -> str:
    """The Widget CRD registered; returns the collection path prefix of its group/version."""
    status, body = kube.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                             WIDGET_CRD)
    assert status == 201, body
    return "/apis/kubetest.foresail.dev/v1alpha1"


_counter = itertools.count()


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace for one test (deleted afterwards)."""
    name = f"t{next(_counter)}-{int(time.time() * 1000) % 100000}"
    status, body = kube.post("/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body
    yield name
    kube.delete(f"/api/v1/namespaces/{name}")
