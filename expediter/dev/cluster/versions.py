"""The pinned versions of the local Kubernetes control plane and KEDA, and where their build lives.

The versions are recorded here and nowhere else. :mod:`~expediter.dev.cluster.building` builds
them from Go module sources into :func:`cluster_home`, keyed by these versions, and
:mod:`~expediter.dev.cluster.running` starts them from there. Called by both, by
``expediter dev cluster`` and by the tests' cluster fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from expediter.dev.fetching import cache_root

__all__ = [
    "BINARIES",
    "ETCD_VERSION",
    "KEDA_VERSION",
    "KUBERNETES_VERSION",
    "Component",
    "cluster_home",
    "components",
    "staging_version",
]

KUBERNETES_VERSION = "1.36.4"
"""kube-apiserver, kube-controller-manager and kube-scheduler, from ``k8s.io/kubernetes``."""

KEDA_VERSION = "2.21.0"
"""The KEDA operator and metrics adapter, from ``github.com/kedacore/keda/v2``."""

ETCD_VERSION = "3.6.8"
"""etcd, from ``go.etcd.io/etcd/server/v3``: the version Kubernetes 1.36 is tested with."""


@dataclass(frozen=True)
class Component:
    """One thing the build makes: a name for progress lines and the binaries it produces."""

    name: str
    version: str
    binaries: tuple[str, ...]


def components() -> tuple[Component, ...]:
    """What ``expediter dev cluster build`` makes, in the order it makes them."""
    return (
        Component("etcd", ETCD_VERSION, ("etcd",)),
        Component(
            "kubernetes",
            KUBERNETES_VERSION,
            ("kube-apiserver", "kube-controller-manager", "kube-scheduler"),
        ),
        Component("keda", KEDA_VERSION, ("keda-operator", "keda-adapter")),
    )


BINARIES = tuple(binary for component in components() for binary in component.binaries)
"""Every binary a built cluster has in its ``bin/`` folder."""


def staging_version(kubernetes: str = KUBERNETES_VERSION) -> str:
    """The version of the published ``k8s.io/*`` staging modules: 1.36.4 -> 0.36.4."""
    major, _, rest = kubernetes.partition(".")
    if major != "1" or not rest:
        raise ValueError(f"expected a Kubernetes 1.x version, got {kubernetes!r}")
    return f"0.{rest}"


def cluster_home(cache: Path | None = None) -> Path:
    """The build's folder: ``<cache>/cluster-<kubernetes>-keda-<keda>``, a ``bin/`` inside."""
    root = cache or cache_root()
    return root / f"cluster-{KUBERNETES_VERSION}-keda-{KEDA_VERSION}"
