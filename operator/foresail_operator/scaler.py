"""The one place that writes an inference Deployment's replica count."""

from __future__ import annotations

from foresail_operator.kube import KubeClient, path_for


async def set_replicas(client: KubeClient, namespace: str, name: str, replicas: int) -> None:
    """Set the Deployment's replicas through its scale subresource (no pod template change)."""
    path = path_for("apps/v1", "deployments", namespace, name, "scale")
    await client.merge_patch(path, {"spec": {"replicas": int(replicas)}})
