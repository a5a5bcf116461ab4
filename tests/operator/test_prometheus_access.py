"""How the operator reaches a Prometheus that wants TLS and a bearer token: a real Prometheus serving
https only, with a certificate from a throwaway CA (trustme), and a token file rotated in place."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from foresail.demo.prometheus import PrometheusServer
from foresail_operator.metrics import MetricsError, PrometheusSource
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
