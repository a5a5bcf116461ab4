"""A small kopf operator that exercises the API test server the way Foresail's operator does:
CR watching, adoption (ownerReferences), status patches, finalizers, Deployment and Pod watches,
and peering. Run by test_apiserver_kopf.py with ``kopf run``."""

from __future__ import annotations

from typing import Any

import kopf
import kubernetes

GROUP, VERSION, PLURAL = "kubetest.foresail.dev", "v1alpha1", "widgets"


@kopf.on.login()
def login(**kwargs: Any) -> Any:
    """Log in from the kubeconfig named by KUBECONFIG."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Short watch timeouts so that reconnection is exercised too."""
    settings.watching.server_timeout = 3
    settings.watching.client_timeout = 10
    settings.posting.enabled = True


def _apps() -> kubernetes.client.AppsV1Api:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(client_configuration=configuration)
    return kubernetes.client.AppsV1Api(kubernetes.client.ApiClient(configuration))


@kopf.on.create(GROUP, VERSION, PLURAL)
def create_fn(spec: dict, name: str, namespace: str, body: Any, **_: Any) -> dict:
    """Create an adopted Deployment for the Widget."""
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": spec.get("replicas", 1),
                 "selector": {"matchLabels": {"widget": name}},
                 "template": {"metadata": {"labels": {"widget": name}},
                              "spec": {"containers": [{"name": "server", "image": "srv:1"}]}}}}
    kopf.adopt(deployment, owner=body)
    # a dict body works (the client's validate_call builds the model), though its types ask for the model
    _apps().create_namespaced_deployment(namespace, deployment)  # type: ignore[arg-type]
    return {"deployment": name}


@kopf.on.field(GROUP, VERSION, PLURAL, field="spec.replicas")
def scale_fn(new: Any, name: str, namespace: str, **_: Any) -> None:
    """Follow the Widget's replicas."""
    if new is not None:
        _apps().patch_namespaced_deployment(name, namespace, {"spec": {"replicas": new}})


@kopf.on.field("apps", "v1", "deployments", field="status.readyReplicas")
def ready_fn(new: Any, name: str, namespace: str, **_: Any) -> None:
    """Copy the Deployment's ready replicas onto the Widget's status."""
    custom = kubernetes.client.CustomObjectsApi(_apps().api_client)
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {
        "status": {"replicas": new or 0, "phase": "Ready" if new else "Pending"}})


@kopf.on.event("", "v1", "pods", labels={"widget": kopf.PRESENT})
def pod_fn(type: str, name: str, logger: Any, **_: Any) -> None:
    """Watch pods (only to exercise the watch)."""
    logger.info(f"pod event {type} {name}")


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete_fn(name: str, logger: Any, **_: Any) -> None:
    """A deletion handler, so that kopf puts a finalizer on Widgets."""
    logger.info(f"deleting {name}")
