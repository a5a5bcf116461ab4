"""A Kubernetes API test server: a small kube-apiserver look-alike for tests.

It serves discovery, CRUD, patches, watches, subresources, CRD registration with schema and
CEL validation, garbage collection and (optionally) a simulated Deployment controller and
kubelet, over real HTTP on 127.0.0.1. Start it with ``foresail dev apiserver`` or, from tests,
with :func:`foresail.kubetest.testing.start_apiserver`.
"""
