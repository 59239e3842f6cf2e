"""The Agent operator: the ``Agent`` custom resource and the kopf operator that reconciles it.

:mod:`~expediter.operating.resources` is the resource as pydantic models, and
:mod:`~.definitions` turns them into the CRD. :mod:`~.desiring` builds an Agent's objects with
:mod:`expediter.deploying`'s own code (one source with ``expediter keda render``);
:mod:`~.topics` makes sure of its topics; :mod:`~.observing` reads its status;
:mod:`~.reconciling` does the work; :mod:`~.handlers` says when (kopf); :mod:`~.running`
runs it; :mod:`~.requesting` is its Kubernetes API client; :mod:`~.manifests` is what
installs it (the CRD, RBAC, the Deployment) as committed under k8s/. kopf is imported in this
package only (an import-linter contract). Called by ``expediter operator`` and the tests.
"""

from expediter.operating.definitions import CRD_NAME, custom_resource_definition
from expediter.operating.desiring import AgentRef, DesiredObjects, desired_objects
from expediter.operating.manifests import operator_manifests
from expediter.operating.resources import (
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    AgentSpec,
    AgentStatus,
    spec_problems,
)
from expediter.operating.running import run
from expediter.operating.settings import OperatorSettings

__all__ = [
    "CRD_NAME",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "AgentRef",
    "AgentSpec",
    "AgentStatus",
    "DesiredObjects",
    "OperatorSettings",
    "custom_resource_definition",
    "desired_objects",
    "operator_manifests",
    "run",
    "spec_problems",
]
