"""Building etcd, Kubernetes and KEDA from Go module sources into the cache, once per version.

Nothing here is packaged and no release page can be reached, so every binary is built from the
sources the Go module proxy serves (see CLUSTER.md in the design notes):

- etcd from a wrapper module that requires ``go.etcd.io/etcd/server/v3``;
- kube-apiserver, kube-controller-manager and kube-scheduler from the ``k8s.io/kubernetes``
  module, whose zip lacks ``staging/``: the published ``k8s.io/*`` modules are copied in;
- the KEDA operator and metrics adapter from a wrapper module that requires KEDA and repeats
  its two go.mod directives, plus KEDA's CRDs copied from the same module.

Each binary is linked to a temporary name and renamed into ``bin/`` when done, and ``bin/``
gets a stamp once all are there: an interrupted build resumes where it stopped. Called by
``expediter dev cluster build``; :func:`built_bin` is what a start calls.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from expediter.dev.cluster.errors import ClusterError, ClusterNotBuiltError
from expediter.dev.cluster.versions import (
    BINARIES,
    ETCD_VERSION,
    KEDA_VERSION,
    KUBERNETES_VERSION,
    cluster_home,
    staging_version,
)
from expediter.errors import ToolMissingError

__all__ = ["GO_MINIMUM", "Progress", "build_cluster", "built_bin", "crds_dir", "find_go"]

GO_MINIMUM = (1, 26)
"""Kubernetes 1.36 and KEDA 2.21 need a recent Go; 1.26 is the one measured."""

Progress = Callable[[str], None]

_STAMP = ".complete"
_GO_HINT = (
    "install Go {minimum} or newer from https://go.dev/dl/ (unpack it in /usr/local/go), then "
    "put its bin/ on PATH or set EXPEDITER_GO to the go binary; Debian's golang-go is too old"
)
_KEDA_DIRECTIVES = (
    # KEDA's own go.mod carries these; a module that requires KEDA must repeat them.
    "replace github.com/nexus-rpc/nexus-proto-annotations v0.1.0 => "
    "github.com/nexus-rpc/nexus-proto-annotations v0.1.1-0.20260629224316-835bd8d49cb4\n"
    "exclude github.com/go-chi/chi/v5 v5.2.3\n"
)


def built_bin(cache: Path | None = None) -> Path:
    """The ``bin/`` folder of a complete build, or a ClusterNotBuiltError saying how to build."""
    bin_dir = cluster_home(cache) / "bin"
    if (bin_dir / _STAMP).is_file() and all((bin_dir / name).is_file() for name in BINARIES):
        return bin_dir
    raise ClusterNotBuiltError(
        f"no built cluster in {bin_dir.parent} (Kubernetes {KUBERNETES_VERSION}, KEDA "
        f"{KEDA_VERSION}): run `expediter dev cluster build` first (once per machine; about "
        "15-30 min cold, and 10 GB of disk with Go's caches)"
    )


def crds_dir(cache: Path | None = None) -> Path:
    """KEDA's CRDs, copied from its module by the build."""
    return cluster_home(cache) / "crds"


def find_go(candidates: Sequence[str | None] | None = None) -> str:
    """The go binary: ``$EXPEDITER_GO``, else ``go`` on PATH, else /usr/local/go/bin/go.

    The first of ``candidates`` (by default those three) that is Go 1.26 or newer.
    """
    minimum = ".".join(map(str, GO_MINIMUM))
    if candidates is None:
        candidates = [os.environ.get("EXPEDITER_GO"), shutil.which("go"), "/usr/local/go/bin/go"]
    found: list[str] = []
    for candidate in candidates:
        if not candidate or not Path(candidate).is_file():
            continue
        version = _go_version(candidate)
        if version is not None and version >= GO_MINIMUM:
            return candidate
        found.append(f"{candidate} is go{'.'.join(map(str, version or ()))}")
    seen = f" ({'; '.join(found)})" if found else ""
    raise ToolMissingError(f"Go {minimum}+ not found{seen}: {_GO_HINT.format(minimum=minimum)}")


def _go_version(go: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run(
            [go, "env", "GOVERSION"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except OSError:
        return None
    match = re.match(r"go(\d+)\.(\d+)", out.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def build_cluster(
    *, cache: Path | None = None, progress: Progress = lambda _line: None, force: bool = False
) -> Path:
    """Build every binary not in the cache yet, and KEDA's CRDs; return the ``bin/`` folder.

    ``force`` rebuilds all of them (Go's own caches still make that quick after the first time).
    """
    home = cluster_home(cache)
    bin_dir = home / "bin"
    if not force:
        try:
            bin_dir = built_bin(cache)
        except ClusterNotBuiltError:
            pass
        else:
            progress(f"already built in {bin_dir}")
            return bin_dir
    go = find_go()
    builder = _Builder(go, home, progress, force=force)
    (bin_dir / _STAMP).unlink(missing_ok=True)
    builder.etcd()
    builder.kubernetes()
    builder.keda()
    stamp = {"kubernetes": KUBERNETES_VERSION, "keda": KEDA_VERSION, "etcd": ETCD_VERSION}
    (bin_dir / _STAMP).write_text(json.dumps({**stamp, "built_at": time.time()}, indent=2))
    return bin_dir


class _Builder:
    """Runs the go commands of one build, each logged to ``logs/<step>.log`` in the home."""

    def __init__(self, go: str, home: Path, progress: Progress, *, force: bool) -> None:
        self.go = go
        self.home = home
        self.bin = home / "bin"
        self.src = home / "src"
        self.logs = home / "logs"
        self.progress = progress
        self.force = force
        for folder in (self.bin, self.src, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        flags = os.environ.get("GOFLAGS", "")
        self.env = {
            **os.environ,
            "GOFLAGS": f"{flags} -buildvcs=false".strip(),
            # A newer toolchain would be fetched silently and slowly; find_go checked ours.
            "GOTOOLCHAIN": "local",
            "GO111MODULE": "on",
        }

    def etcd(self) -> None:
        if self._have("etcd"):
            return
        module = self._wrapper("etcd", f"require go.etcd.io/etcd/server/v3 v{ETCD_VERSION}\n")
        self._go("etcd", ["get", f"go.etcd.io/etcd/server/v3@v{ETCD_VERSION}"], module)
        self._link("etcd", ETCD_VERSION, "go.etcd.io/etcd/server/v3", module, [])

    def kubernetes(self) -> None:
        names = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
        if all(self._have(name) for name in names):
            return
        tree = self._kubernetes_tree()
        minor = KUBERNETES_VERSION.split(".")[1]
        flags = [
            f"-X k8s.io/component-base/version.gitVersion=v{KUBERNETES_VERSION}",
            "-X k8s.io/component-base/version.gitMajor=1",
            f"-X k8s.io/component-base/version.gitMinor={minor}",
            "-X k8s.io/component-base/version.gitTreeState=clean",
        ]
        for name in names:
            if not self._have(name):
                self._link(name, KUBERNETES_VERSION, f"./cmd/{name}", tree, flags)

    def keda(self) -> None:
        crds = self.home / "crds"
        names = ("keda-operator", "keda-adapter")
        if all(self._have(name) for name in names) and (crds / _STAMP).is_file():
            return
        module = self._wrapper(
            "keda", f"require github.com/kedacore/keda/v2 v{KEDA_VERSION}\n{_KEDA_DIRECTIVES}"
        )
        keda = "github.com/kedacore/keda/v2"
        self._go("keda", ["get", *(f"{keda}/cmd/{c}@v{KEDA_VERSION}" for c in _KEDA_CMDS)], module)
        flags = [f"-X {keda}/version.Version=v{KEDA_VERSION}"]
        for name, cmd in zip(names, _KEDA_CMDS, strict=True):
            if not self._have(name):
                self._link(name, KEDA_VERSION, f"{keda}/cmd/{cmd}", module, flags)
        listed = self._go("keda", ["list", "-m", "-json", keda], module)
        source = Path(json.loads(listed)["Dir"]) / "config" / "crd" / "bases"
        if crds.exists():
            shutil.rmtree(crds)
        crds.mkdir()
        for crd in sorted(source.glob("*.yaml")):
            shutil.copyfile(crd, crds / crd.name)
        (crds / _STAMP).write_text(KEDA_VERSION)

    def _have(self, name: str) -> bool:
        return not self.force and (self.bin / name).is_file()

    def _wrapper(self, name: str, requirements: str) -> Path:
        """A module of our own that requires the real one, so that go can build it."""
        module = self.src / name
        module.mkdir(exist_ok=True)
        header = f"module expediter.local/{name}\n\ngo {GO_MINIMUM[0]}.{GO_MINIMUM[1]}\n\n"
        go_mod = module / "go.mod"
        wanted = header + requirements
        written = module / ".expediter-go.mod"
        # go get rewrites go.mod; starting over each time would throw away what it resolved.
        if not go_mod.is_file() or not written.is_file() or written.read_text() != wanted:
            go_mod.write_text(wanted)
            (module / "go.sum").unlink(missing_ok=True)
            written.write_text(wanted)
        return module

    def _kubernetes_tree(self) -> Path:
        """``k8s.io/kubernetes`` made buildable: its staging modules copied in, vendor/ gone."""
        tree = self.src / "kubernetes"
        ready = tree / ".expediter-sources"
        if ready.is_file() and ready.read_text() == KUBERNETES_VERSION:
            return tree
        self.progress(f"fetching the sources of Kubernetes {KUBERNETES_VERSION} ...")
        started = time.monotonic()
        (root,) = self._download(["k8s.io/kubernetes@v" + KUBERNETES_VERSION])
        _writable_copy(Path(root["Dir"]), tree)
        shutil.rmtree(tree / "vendor", ignore_errors=True)
        staged = _staging_modules((tree / "go.mod").read_text())
        if not staged:
            raise ClusterError(
                f"k8s.io/kubernetes v{KUBERNETES_VERSION}'s go.mod replaces no staging module: "
                "the layout this build expects changed; pin a version CLUSTER.md was measured with"
            )
        published = staging_version()
        for module in self._download([f"{name}@v{published}" for name in staged]):
            _writable_copy(Path(module["Dir"]), tree / "staging" / "src" / module["Path"])
        ready.write_text(KUBERNETES_VERSION)
        self.progress(
            f"  {len(staged)} staging modules copied in {time.monotonic() - started:.0f} s"
        )
        return tree

    def _download(self, modules: Sequence[str]) -> list[dict[str, str]]:
        out = self._go("kubernetes-sources", ["mod", "download", "-json", *modules], self.src)
        found = list(_json_stream(out))
        for module in found:
            if "Error" in module:
                raise ClusterError(
                    f"the Go module proxy could not serve {module.get('Path')}@"
                    f"{module.get('Version')}: {module['Error']}; check GOPROXY "
                    "(`go env GOPROXY`) and the network, then build again"
                )
        return found

    def _link(self, name: str, version: str, package: str, cwd: Path, flags: list[str]) -> None:
        self.progress(f"building {name} {version} ...")
        started = time.monotonic()
        partial = self.bin / f".{name}.partial"
        ldflags = " ".join(["-s", "-w", *flags])
        self._go(
            name, ["build", "-trimpath", "-ldflags", ldflags, "-o", str(partial), package], cwd
        )
        partial.replace(self.bin / name)
        self.progress(f"  {name} {version} built in {time.monotonic() - started:.0f} s")

    def _go(self, step: str, args: list[str], cwd: Path) -> str:
        """Run ``go args`` in ``cwd``; its stdout, with stderr logged; a ClusterError on failure."""
        log = self.logs / f"{step}.log"
        command = [self.go, *args]
        with log.open("a") as sink:
            sink.write(f"\n$ cd {cwd} && {' '.join(command)}\n")
            sink.flush()
            result = subprocess.run(
                command, cwd=cwd, env=self.env, stdout=subprocess.PIPE, stderr=sink, check=False
            )
        out = result.stdout.decode(errors="replace")
        if result.returncode == 0:
            return out
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise ClusterError(
            f"building {step} failed: `go {' '.join(args)}` exited {result.returncode}. "
            f"The end of {log}:\n{tail}\n{_hint(tail)}"
        )


_KEDA_CMDS = ("operator", "adapter")


def _hint(tail: str) -> str:
    lowered = tail.lower()
    if "no space left" in lowered:
        return (
            "The disk is full: the build needs about 10 GB (Go's module cache ~3.5 GB and "
            "build cache ~6 GB included); free some, then run `expediter dev cluster build` "
            "again."
        )
    if "killed" in lowered or "out of memory" in lowered:
        return (
            "The compiler was killed, most likely for memory (it needs about 3 GB): close "
            "something or set GOFLAGS=-p=1, then run `expediter dev cluster build` again."
        )
    if "proxy" in lowered or "dial tcp" in lowered or "timeout" in lowered:
        return (
            "The Go module proxy did not answer: check the network and GOPROXY, then run "
            "`expediter dev cluster build` again (what was downloaded is kept)."
        )
    return (
        "Fix the cause above and run `expediter dev cluster build` again: what was built is kept."
    )


def _staging_modules(go_mod: str) -> list[str]:
    """The ``k8s.io/*`` modules that go.mod replaces with ``./staging/src/k8s.io/*``."""
    pattern = re.compile(r"^\s*(?:replace\s+)?(k8s\.io/\S+)\s+=>\s+\./staging/src/k8s\.io/", re.M)
    return sorted(set(pattern.findall(go_mod)))


def _json_stream(text: str) -> Iterator[dict[str, str]]:
    """The objects of ``go mod download -json``: one after another, not a JSON array."""
    decoder = json.JSONDecoder()
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return
        item, index = decoder.raw_decode(text, index)
        yield item


def _writable_copy(source: Path, target: Path) -> None:
    """Copy a module from Go's read-only module cache into a folder we may later delete."""
    if target.exists():
        _make_writable(target)
        shutil.rmtree(target)
    shutil.copytree(source, target, copy_function=shutil.copyfile)
    _make_writable(target)


def _make_writable(root: Path) -> None:
    for folder, _dirs, _files in os.walk(root):
        os.chmod(folder, 0o700)  # the module cache makes folders read-only
