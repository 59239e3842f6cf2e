"""The local node's container plan: what the pod spec says maps through the pod's mounts, and
what the node adds itself (its own entrypoint, PATH) stays a path on this machine.

A checkout under /tmp (a CI clone) with a pod that mounts an emptyDir at /tmp ran the worker
as ``<pod>/volumes/tmp/.../.venv/bin/expediter``: "No such file or directory", CrashLoopBackOff.
"""

from __future__ import annotations

import sys
from pathlib import Path

from expediter.dev.cluster.launching import PodLayout, plan_container


def _pod(container: dict[str, object]) -> dict[str, object]:
    return {
        "metadata": {"name": "prober-1", "namespace": "ns"},
        "spec": {"containers": [container], "volumes": [{"name": "tmp", "emptyDir": {}}]},
    }


def test_the_nodes_entrypoint_and_path_are_not_mapped_through_a_mount(tmp_path: Path) -> None:
    # The pod mounts a volume at the top directory this venv lives under (/tmp in a CI clone).
    top = "/" + Path(sys.executable).parts[1]
    root = tmp_path / "checkout"
    root.mkdir()
    layout = PodLayout(root=root, pod_dir=tmp_path / "pod", ports={}, api_port=6443)
    container = {
        "name": "expediter",
        "image": "expediter:dev",
        "args": ["worker", "tests/agents/probe.py", "--state", f"{top}/state"],
        "env": [{"name": "SCRATCH", "value": f"{top}/scratch"}],
        "volumeMounts": [{"name": "tmp", "mountPath": top}],
    }
    plan = plan_container(_pod(container), container, layout, {})

    assert plan.argv[0] == str(Path(sys.executable).parent / "expediter")
    assert plan.env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    volume = layout.pod_dir / "volumes" / "tmp"
    assert plan.argv[1:] == ["worker", "tests/agents/probe.py", "--state", f"{volume}/state"]
    assert plan.env["SCRATCH"] == f"{volume}/scratch"
    assert plan.cwd == root
