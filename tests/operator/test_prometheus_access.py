"""How the operator reaches a Prometheus that wants TLS and a bearer token: a real Prometheus serving
https only, with a certificate from a throwaway CA (trustme), and a token file rotated in place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
import yaml

from foresail.demo.prometheus import PrometheusServer
from foresail_operator.collector import NOT_READ_YET
from foresail_operator.config import OperatorConfig
from foresail_operator.metrics import MetricsError, PrometheusSource
from tests.helpers import ROOT, condition, wait_for
from tests.operator.conftest import LLMD, Operator
from tests.reliability.fake_prometheus import FakePrometheus

KEY = ("default", "tiny")


def certificates(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(server certificate chain, its key, the CA) for 127.0.0.1."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    chain, key, ca_file = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    return chain, key, ca_file


def test_an_https_prometheus_is_read_with_its_ca_and_refused_without(tmp_path: Path):
    chain, key, ca_file = certificates(tmp_path)
    with PrometheusServer(tmp_path / "prometheus", tls=(chain, key, ca_file)) as prometheus:
        assert prometheus.url.startswith("https://")
        trusted = PrometheusSource(prometheus.url, ca_file=str(ca_file), timeout_s=5)
        assert trusted.snapshot(["foresail"]) == {}  # answered: no inference pod scraped yet
        with pytest.raises(MetricsError, match="CERTIFICATE_VERIFY_FAILED"):
            PrometheusSource(prometheus.url, timeout_s=5).snapshot(["foresail"])
        with pytest.raises(MetricsError, match="CA certificate bundle"):
            PrometheusSource(prometheus.url, ca_file=str(tmp_path / "missing.pem"), timeout_s=5).snapshot(["foresail"])


def test_the_token_file_is_read_at_each_query_so_a_rotated_token_is_sent(tmp_path: Path):
    token = tmp_path / "token"
    token.write_text("first\n")
    fake = FakePrometheus([KEY]).start()
    try:
        source = PrometheusSource(fake.url, token="fixed", token_file=str(token), timeout_s=2)
        assert KEY in source.snapshot(["foresail"])
        assert set(fake.authorizations) == {"Bearer first"}  # the file wins over a fixed token
        token.write_text("second\n")  # as the kubelet rotates a projected service account token
        fake.authorizations.clear()
        source.snapshot(["foresail"])
        assert set(fake.authorizations) == {"Bearer second"}
        token.unlink()
        with pytest.raises(MetricsError, match=f"cannot read the Prometheus token file {token}"):
            source.snapshot(["foresail"])
        fixed = PrometheusSource(fake.url, token="fixed", timeout_s=2)
        fake.authorizations.clear()
        fixed.snapshot(["foresail"])
        assert set(fake.authorizations) == {"Bearer fixed"}
    finally:
        fake.stop()


def test_headers_go_with_every_query_beside_the_token(monkeypatch: pytest.MonkeyPatch):
    """A tenant header (Mimir's X-Scope-OrgID) as FORESAIL_PROMETHEUS_HEADERS sets it, beside the token."""
    monkeypatch.setenv("FORESAIL_PROMETHEUS_HEADERS", "X-Scope-OrgID=team-a, X-Extra = 1")
    config = OperatorConfig.from_env()
    assert config.prometheus_headers == {"X-Scope-OrgID": "team-a", "X-Extra": "1"}
    fake = FakePrometheus([KEY]).start()
    try:
        source = PrometheusSource(fake.url, token="fixed", timeout_s=2, headers=config.prometheus_headers)
        assert KEY in source.snapshot(["foresail"])
        assert fake.headers and all(h.get("X-Scope-OrgID") == "team-a" and h.get("X-Extra") == "1"
                                    and h.get("Authorization") == "Bearer fixed" for h in fake.headers)
    finally:
        fake.stop()
    for bad in ("X-Scope-OrgID", "Bad Name=1", "=team-a"):
        monkeypatch.setenv("FORESAIL_PROMETHEUS_HEADERS", bad)
        with pytest.raises(ValueError, match="FORESAIL_PROMETHEUS_HEADERS: .* is not a header as Name=value"):
            OperatorConfig.from_env()
    done = subprocess.run([sys.executable, "-m", "foresail", "operator", "--kubeconfig", "/nonexistent"],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode != 0 and "error: FORESAIL_PROMETHEUS_HEADERS" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("given_ca", [True, False], ids=["with-ca", "without-ca"])
def test_the_operator_process_reads_an_https_prometheus_with_the_ca_it_is_given(
        cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given_ca: bool):
    """The setting as the chart passes it (FORESAIL_PROMETHEUS_CA_FILE) reaches the operator's reads:
    with the CA, Prometheus answers (no series for pods it does not scrape here); without it, the condition
    names the refused certificate."""
    chain, key, ca_file = certificates(tmp_path)
    with PrometheusServer(tmp_path / "prometheus", tls=(chain, key, ca_file)) as prometheus:
        monkeypatch.setenv("FORESAIL_PROMETHEUS_URL", prometheus.url)
        if given_ca:
            monkeypatch.setenv("FORESAIL_PROMETHEUS_CA_FILE", str(ca_file))
        op = Operator(cluster.kubeconfig, tmp_path / "operator.log", "--standalone").start()
        try:
            doc = yaml.safe_load((ROOT / "examples" / "minimal.yaml").read_text())
            doc["spec"]["autoscaling"] = {"intervalSeconds": 5}
            path = LLMD.format(ns="default")
            cluster.kube.create(path, doc)

            def read() -> dict | bool:  # a decision after the first read (the first may come before it)
                metrics = condition(cluster.kube.get(f"{path}/tiny"), "MetricsAvailable")
                return (metrics.get("reason") not in (None, "Pending")
                        and NOT_READ_YET.split(": ", 1)[1] not in metrics.get("message", "") and metrics)

            metrics = wait_for(read, timeout=30, what="MetricsAvailable after a read")
            refused = "CERTIFICATE_VERIFY_FAILED" in metrics["message"]
            assert refused != given_ca, metrics
            if given_ca:  # answered: demand zero while no replica is up, else no series (no pod is scraped)
                assert metrics["reason"] in ("MetricsFresh", "NoSeries"), metrics
            assert op.alive()
        finally:
            op.kill()
