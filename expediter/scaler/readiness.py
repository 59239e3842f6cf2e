"""Replicas still loading their model: the scale target's pods that are not ready yet.

For the cold-start rule (:class:`~expediter.scaling.working.WorkMeter`), the scaler needs how many
replicas of a ScaledObject's target exist but do not serve yet. On Kubernetes that is the
Deployment's ``spec.replicas`` minus ``status.readyReplicas``: a pod whose startupProbe has not
passed (a GPU worker loading its model) is not ready. :class:`DeploymentReadiness` reads the
ScaledObject's ``scaleTargetRef`` once, then the Deployment at each call.

Who calls it: :class:`expediter.scaler.serving.ExternalScaler` (from a thread: the Kubernetes
client is synchronous), when ``expediter scaler`` is given ``--kubeconfig`` or ``--in-cluster``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client, config

__all__ = ["DeploymentReadiness"]


class DeploymentReadiness:
    """``(namespace, ScaledObject) -> replicas not ready`` from the apiserver."""

    def __init__(self, kubeconfig: Path | None = None) -> None:
        if kubeconfig is None:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            api = client.ApiClient()
        else:
            api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig)
            )
        self._custom = client.CustomObjectsApi(api)
        self._apps = client.AppsV1Api(api)
        self._targets: dict[tuple[str, str], str] = {}

    def __call__(self, namespace: str, name: str) -> int:
        target = self._targets.get((namespace, name))
        if target is None:
            scaled: Any = self._custom.get_namespaced_custom_object(
                "keda.sh", "v1alpha1", namespace, "scaledobjects", name
            )
            target = str(scaled["spec"]["scaleTargetRef"]["name"])
            self._targets[(namespace, name)] = target
        deployment: Any = self._apps.read_namespaced_deployment(target, namespace)
        wanted = int(deployment.spec.replicas or 0)
        ready = int(deployment.status.ready_replicas or 0)
        return max(0, wanted - ready)
