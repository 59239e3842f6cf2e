"""What a pod's container becomes on this machine: a command line, an environment, a directory.

No image is pulled. The rules, which the README repeats:

- **Image.** A container with a ``command`` runs that program from this machine's PATH. A
  container without one runs its image's entrypoint, and only Expediter's images have one
  here: an image whose name starts with ``expediter`` (``expediter:dev``,
  ``expediter-gpu:0.1.0``, ``ghcr.io/org/expediter:1``) runs the ``expediter`` entry point of
  the virtual environment the node runs in, with the container's ``args``. Any other image
  without a command waits with ``ErrImageNeverPull``, saying so.
- **Filesystem.** The image's WORKDIR (``/app``, where the Dockerfile copies agents/, topics/,
  workflows/) is this checkout. Each volume is a directory of the pod's
  (``emptyDir``; ``configMap`` and ``secret`` with their keys as files). A path in ``command``,
  ``args``, ``workingDir`` or an env value that starts with a mount path or ``/app`` is
  rewritten to the local directory, so ``EXPEDITER_DATA_DIR=/var/lib/expediter`` lands in the
  pod's ``data`` volume.
- **Environment.** As a kubelet builds it: the image's env, ``envFrom`` (ConfigMaps, Secrets,
  with prefixes), then ``env`` (values, ``$(VAR)`` references, ``fieldRef``,
  ``resourceFieldRef``, ``configMapKeyRef``, ``secretKeyRef``); a missing ConfigMap, Secret or
  key that is not optional is ``CreateContainerConfigError``. Plus ``HOSTNAME`` (the pod's
  name) and ``KUBERNETES_SERVICE_HOST``/``PORT`` (the local API server).
- **Ports.** Pods share the machine's network, so each declared containerPort gets a free
  local port; probes aimed at it (by name or number) go there. ``EXPEDITER_HTTP_PORT``, the
  port the worker and the orchestrator bind, is set to the local port of the containerPort it
  names (or of the first one declared; ``0``, a free port, when none is), and
  ``EXPEDITER_HTTP_HOST`` to 127.0.0.1: loopback only.

Pure, except :func:`prepare_volumes`, which writes the volume directories. Called by
:mod:`~expediter.dev.cluster.podrunning`.
"""

from __future__ import annotations

import base64
import math
import os
import re
import shutil
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expediter.dev.cluster.nodes import NODE_IP

__all__ = [
    "EXPEDITER_IMAGE_PREFIX",
    "IMAGE_WORKDIR",
    "ConfigError",
    "ContainerPlan",
    "Objects",
    "PodLayout",
    "allocate_ports",
    "expand",
    "plan_container",
    "prepare_volumes",
    "referenced_objects",
]

EXPEDITER_IMAGE_PREFIX = "expediter"
IMAGE_WORKDIR = "/app"
"""The Dockerfile's WORKDIR: this checkout, here."""
# The path is inside the container; a pod with /tmp mounted gets its own local directory.
IMAGE_ENV = {"PYTHONUNBUFFERED": "1", "EXPEDITER_DEV_DIR": "/tmp/expediter"}  # noqa: S108
"""The Dockerfile's ENV."""
PORT_ENV, HOST_ENV = "EXPEDITER_HTTP_PORT", "EXPEDITER_HTTP_HOST"

Objects = Mapping[tuple[str, str], Mapping[str, Any] | None]
"""The pod's ConfigMaps and Secrets by (``configmap`` | ``secret``, name); None when missing."""


class ConfigError(Exception):
    """A container cannot be made yet: a kubelet's waiting ``reason`` and its message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class PodLayout:
    """Where one pod lives on this machine."""

    root: Path
    """The checkout: the image's WORKDIR."""
    pod_dir: Path
    ports: Mapping[str | int, int]
    """Local port by containerPort name and number (the pod's containers share them)."""
    api_port: int


@dataclass(frozen=True)
class ContainerPlan:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


def allocate_ports(pod: Mapping[str, Any]) -> dict[str | int, int]:
    """A free local port for each containerPort of the pod, by its name and its number."""
    ports: dict[str | int, int] = {}
    for container in pod["spec"].get("containers", []):
        for port in container.get("ports") or []:
            number = int(port["containerPort"])
            if number in ports:
                continue
            with socket.socket() as sock:
                sock.bind((NODE_IP, 0))
                ports[number] = int(sock.getsockname()[1])
            if port.get("name"):
                ports[str(port["name"])] = ports[number]
    return ports


def referenced_objects(pod: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The ConfigMaps and Secrets the pod's env, envFrom and volumes name."""
    found: set[tuple[str, str]] = set()
    for container in pod["spec"].get("containers", []):
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                found.add(("configmap", source["configMapRef"]["name"]))
            if "secretRef" in source:
                found.add(("secret", source["secretRef"]["name"]))
        for var in container.get("env") or []:
            ref = var.get("valueFrom") or {}
            if "configMapKeyRef" in ref:
                found.add(("configmap", ref["configMapKeyRef"]["name"]))
            if "secretKeyRef" in ref:
                found.add(("secret", ref["secretKeyRef"]["name"]))
    for volume in pod["spec"].get("volumes") or []:
        if "configMap" in volume:
            found.add(("configmap", volume["configMap"]["name"]))
        if "secret" in volume:
            found.add(("secret", volume["secret"]["secretName"]))
    return found


def _data(obj: Mapping[str, Any] | None, kind: str) -> dict[str, str]:
    if obj is None:
        return {}
    data = {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
    if kind == "secret":
        data = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
    return data


def prepare_volumes(pod: Mapping[str, Any], layout: PodLayout, objects: Objects) -> None:
    """Make each volume's directory: empty, or the ConfigMap's or Secret's keys as files."""
    for volume in pod["spec"].get("volumes") or []:
        target = layout.pod_dir / "volumes" / volume["name"]
        if "emptyDir" in volume:
            target.mkdir(parents=True, exist_ok=True)
            continue
        kind = "configmap" if "configMap" in volume else "secret" if "secret" in volume else None
        if kind is None:
            other = next((k for k in volume if k != "name"), "?")
            raise ConfigError(
                "CreateContainerConfigError",
                f"volume {volume['name']!r} is of type {other}: the local node mounts emptyDir, "
                "configMap and secret volumes only",
            )
        source = volume["configMap"] if kind == "configmap" else volume["secret"]
        name = source.get("name") or source.get("secretName")
        obj = objects.get((kind, name))
        if obj is None and not source.get("optional"):
            raise ConfigError("CreateContainerConfigError", f'{kind} "{name}" not found')
        data = _data(obj, kind)
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for item in items:
            if item["key"] not in data:
                raise ConfigError(
                    "CreateContainerConfigError", f'{kind} "{name}" has no key {item["key"]!r}'
                )
            path = target / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(data[item["key"]])


def _mounts(
    pod: Mapping[str, Any], container: Mapping[str, Any], layout: PodLayout, image: bool
) -> list[tuple[str, Path]]:
    """(path in the container, local path), longest first."""
    mounts = [
        (m["mountPath"].rstrip("/") or "/", layout.pod_dir / "volumes" / m["name"])
        for m in container.get("volumeMounts") or []
    ]
    if image:
        mounts.append((IMAGE_WORKDIR, layout.root))
    return sorted(mounts, key=lambda m: len(m[0]), reverse=True)


def _local(value: str, mounts: Sequence[tuple[str, Path]]) -> str:
    for inside, outside in mounts:
        if value == inside:
            return str(outside)
        if value.startswith(inside + "/"):
            return str(outside) + value[len(inside) :]
    return value


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` is a ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _REFERENCE.sub(replace, value)


def _field(pod: Mapping[str, Any], path: str) -> str:
    meta, spec = pod["metadata"], pod["spec"]
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if keyed:
        return str((meta.get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    values = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": NODE_IP,
        "status.hostIPs": NODE_IP,
        "status.podIP": NODE_IP,
        "status.podIPs": NODE_IP,
    }
    if path not in values:
        raise ConfigError("CreateContainerConfigError", f"fieldRef {path!r} is not supported")
    return str(values[path])


_UNITS = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "m": 10**-3,
}


def _quantity(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text).strip())
    if match is None or match.group(2) not in ("", *_UNITS):
        raise ConfigError("CreateContainerConfigError", f"cannot read the quantity {text!r}")
    return float(match.group(1)) * _UNITS.get(match.group(2), 1)


def _resource(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    kind, _, name = str(ref["resource"]).partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name) or (resources.get("limits") or {}).get(name)
    if value is None:  # no limit: the node's allocatable, as a kubelet does
        value = {"cpu": "16", "memory": "64Gi"}.get(name, "0")
    divisor = _quantity(ref.get("divisor") or "1")
    return str(math.ceil(_quantity(value) / divisor))


def _env_from(container: Mapping[str, Any], objects: Objects) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        kind, ref = (
            ("configmap", source["configMapRef"])
            if "configMapRef" in source
            else ("secret", source["secretRef"])
        )
        obj = objects.get((kind, ref["name"]))
        if obj is None and not ref.get("optional"):
            raise ConfigError("CreateContainerConfigError", f'{kind} "{ref["name"]}" not found')
        for key, value in _data(obj, kind).items():
            env[f"{source.get('prefix', '')}{key}"] = value
    return env


def _value_from(
    pod: Mapping[str, Any], container: Mapping[str, Any], ref: Mapping[str, Any], objects: Objects
) -> str | None:
    if "fieldRef" in ref:
        return _field(pod, ref["fieldRef"]["fieldPath"])
    if "resourceFieldRef" in ref:
        return _resource(container, ref["resourceFieldRef"])
    kind, key_ref = (
        ("configmap", ref["configMapKeyRef"])
        if "configMapKeyRef" in ref
        else ("secret", ref["secretKeyRef"])
    )
    obj = objects.get((kind, key_ref["name"]))
    data = _data(obj, kind)
    if key_ref["key"] in data:
        return data[key_ref["key"]]
    if key_ref.get("optional"):
        return None
    missing = (
        f'{kind} "{key_ref["name"]}" not found'
        if obj is None
        else f'couldn\'t find key {key_ref["key"]} in {kind} "{key_ref["name"]}"'
    )
    raise ConfigError("CreateContainerConfigError", missing)


def _argv(container: Mapping[str, Any], image: bool) -> list[str]:
    command = list(container.get("command") or [])
    if command:
        return [*command, *(container.get("args") or [])]
    if not image:
        raise ConfigError(
            "ErrImageNeverPull",
            f"image {container.get('image')!r} is not on this machine: the local node runs "
            f"images named {EXPEDITER_IMAGE_PREFIX}* as this checkout's `expediter`, and "
            "anything else only through the container's command",
        )
    entrypoint = Path(sys.executable).parent / "expediter"
    return [str(entrypoint), *(container.get("args") or [])]


def _is_expediter(image: str) -> bool:
    name = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return name.startswith(EXPEDITER_IMAGE_PREFIX)


def plan_container(
    pod: Mapping[str, Any], container: Mapping[str, Any], layout: PodLayout, objects: Objects
) -> ContainerPlan:
    """The command line, environment and directory of ``container``, or :class:`ConfigError`."""
    image = _is_expediter(str(container.get("image") or ""))
    mounts = _mounts(pod, container, layout, image)
    # Paths on this machine, set by the node: never mapped through the pod's mounts (a checkout
    # under /tmp would otherwise run from the pod's /tmp emptyDir).
    node_env: dict[str, str] = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOSTNAME": pod["metadata"]["name"],
        "KUBERNETES_SERVICE_HOST": NODE_IP,
        "KUBERNETES_SERVICE_PORT": str(layout.api_port),
    }
    if "LANG" in os.environ:
        node_env["LANG"] = os.environ["LANG"]
    env = dict(node_env)
    if image:
        env.update(IMAGE_ENV)
    env.update(_env_from(container, objects))
    for var in container.get("env") or []:
        if "valueFrom" in var:
            value = _value_from(pod, container, var["valueFrom"], objects)
            if value is not None:
                env[var["name"]] = value
        else:
            env[var["name"]] = expand(str(var.get("value", "")), env)
    env = {
        name: value if node_env.get(name) == value else _local(value, mounts)
        for name, value in env.items()
    }
    _loopback_port(container, layout, env)
    given = _argv(container, image)
    argv = [_local(expand(str(arg), env), mounts) for arg in given]
    if image and not container.get("command"):
        argv[0] = given[0]  # the node's own entrypoint, a path on this machine
    workdir = container.get("workingDir") or (IMAGE_WORKDIR if image else None)
    cwd = Path(_local(workdir, mounts)) if workdir else layout.root
    if not cwd.is_dir():
        raise ConfigError(
            "CreateContainerConfigError",
            f"workingDir {workdir!r} is {cwd} here, which does not exist",
        )
    return ContainerPlan(argv=argv, env=env, cwd=cwd)


def _loopback_port(container: Mapping[str, Any], layout: PodLayout, env: dict[str, str]) -> None:
    declared = [int(p["containerPort"]) for p in container.get("ports") or []]
    wanted = env.get(PORT_ENV)
    if wanted is not None and wanted.isdigit() and int(wanted) in layout.ports:
        env[PORT_ENV] = str(layout.ports[int(wanted)])
    elif wanted is None:
        env[PORT_ENV] = str(layout.ports[declared[0]]) if declared else "0"
    env[HOST_ENV] = NODE_IP
