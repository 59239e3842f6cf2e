"""Deploying to Kubernetes: the keda/ and k8s/ manifests, rendered from the agents and catalog.

:mod:`~expediter.deploying.profiles` derives each agent's numbers (KEDA trigger, replicas, HPA
behavior, drain and grace, startup budget); :mod:`~.manifests` lays them out as files, with the
objects built by :mod:`~.kedaobjects`, :mod:`~.clusterobjects`, :mod:`~.workloads` and
:mod:`~.overlays` from the shared pieces in :mod:`~.objects`; :mod:`~.rendering` writes them and
finds drift; :mod:`~.checking` refuses what KEDA and the kubelet would get wrong. Called by
``expediter keda render|check`` and the tests.
"""

from expediter.deploying.checking import (
    Document,
    Refusal,
    check_documents,
    documents_of,
    read_documents,
    trigger_problems,
)
from expediter.deploying.manifests import (
    AgentSource,
    Manifest,
    build_manifests,
    load_sources,
    topic_object_name,
)
from expediter.deploying.profiles import DeploySettings, ScalingProfile, scaling_profile
from expediter.deploying.rendering import (
    Drift,
    WriteReport,
    find_drift,
    render_text,
    write_manifests,
)

__all__ = [
    "AgentSource",
    "DeploySettings",
    "Document",
    "Drift",
    "Manifest",
    "Refusal",
    "ScalingProfile",
    "WriteReport",
    "build_manifests",
    "check_documents",
    "documents_of",
    "find_drift",
    "load_sources",
    "read_documents",
    "render_text",
    "scaling_profile",
    "topic_object_name",
    "trigger_problems",
    "write_manifests",
]
