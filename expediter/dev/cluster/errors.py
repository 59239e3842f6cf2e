"""The error the local cluster raises: a build, a start or a stop that went wrong.

Raised by :mod:`~expediter.dev.cluster.building`, :mod:`~expediter.dev.cluster.certificates`,
:mod:`~expediter.dev.cluster.installing` and :mod:`~expediter.dev.cluster.running`; caught by
``expediter dev cluster``, which prints the message (it names the problem and the fix).
"""

from __future__ import annotations

from expediter.errors import ExpediterError

__all__ = ["ClusterError", "ClusterNotBuiltError"]


class ClusterError(ExpediterError):
    """Building, starting or stopping the local Kubernetes and KEDA failed."""


class ClusterNotBuiltError(ClusterError):
    """The binaries are not in the cache yet: ``expediter dev cluster build`` makes them."""
