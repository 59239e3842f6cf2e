"""``expediter dev cluster build|start|status|stop``: a real Kubernetes and KEDA for development.

The binaries are built once per machine from Go module sources into the cache (see
:mod:`expediter.dev.cluster`); the running cluster keeps its state, certificates, kubeconfig
and logs in ``$EXPEDITER_DEV_DIR/cluster`` (default ``.expediter/cluster``). ``start`` also runs
the local node (``--no-node`` leaves it out, ``--gpu-node`` adds a GPU node), which runs the
pods bound to it as processes; ``status`` lists the nodes, and the pods that wait with the
scheduler's reason.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from expediter.cli.output import console, emit_json, err_console, fail
from expediter.dev.cluster import (
    ETCD_VERSION,
    EXTERNAL_METRICS_APISERVICE,
    KEDA_VERSION,
    KUBERNETES_VERSION,
    ClusterNotBuiltError,
    LocalCluster,
    build_cluster,
    built_bin,
)
from expediter.dev.cluster.podlisting import cluster_pods, pod_lines
from expediter.settings import DevSettings

__all__ = ["app"]

app = typer.Typer(
    help="Build, start, stop and inspect a local Kubernetes control plane with KEDA.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]


def _local(
    hpa_sync_period: float = 15.0, *, node: bool = False, gpu_node: bool = False
) -> LocalCluster:
    return LocalCluster(
        DevSettings().dir / "cluster", hpa_sync_period=hpa_sync_period, node=node,
        gpu_node=gpu_node,
    )  # fmt: skip


def _versions() -> dict[str, str]:
    return {"kubernetes": KUBERNETES_VERSION, "keda": KEDA_VERSION, "etcd": ETCD_VERSION}


@app.command()
def build(
    force: Annotated[
        bool, typer.Option("--force", help="Build every binary again, even if cached.")
    ] = False,
    json_: JsonFlag = False,
) -> None:
    """Build etcd, Kubernetes and KEDA from Go module sources into the cache (once per machine).

    Cold, this takes 15-30 min and about 10 GB of disk (Go's module and build caches, which
    `go clean -cache -modcache` frees afterwards); later runs find the binaries and return.
    """
    started = time.monotonic()
    # Progress goes to stderr, so that --json leaves stdout to the one document.
    bin_dir = build_cluster(
        progress=lambda line: err_console.print(line, highlight=False), force=force
    )
    _report(
        {**_versions(), "bin": str(bin_dir), "seconds": round(time.monotonic() - started, 1)},
        json_,
    )


@app.command()
def start(
    hpa_sync_period: Annotated[
        float,
        typer.Option(
            help="Seconds between the HPA controller's syncs (Kubernetes' default is 15; "
            "shorter makes scaling visible sooner)."
        ),
    ] = 15.0,
    timeout: Annotated[float, typer.Option(help="Seconds the start may take.")] = 180.0,
    node: Annotated[
        bool,
        typer.Option(
            "--node/--no-node",
            help="Run the local node, which runs the pods bound to it as local processes "
            "(expediter* images as this checkout's `expediter`).",
        ),
    ] = True,
    gpu_node: Annotated[
        bool,
        typer.Option(
            "--gpu-node",
            help="Add a GPU node: nvidia.com/gpu capacity, label nvidia.com/gpu.present=true "
            "and taint nvidia.com/gpu:NoSchedule, as the gpu overlay expects.",
        ),
    ] = False,
    json_: JsonFlag = False,
) -> None:
    """Start the cluster (or find the one already running) and print its kubeconfig.

    A fresh start begins empty: the etcd data of a stopped cluster is wiped. On a running
    cluster, a start with --gpu-node (or with a node when none runs) starts the node anew.
    """
    cluster = _local(hpa_sync_period, node=node, gpu_node=gpu_node)
    running = cluster.status()
    if running is None:
        built_bin()  # before the banner: not built is an error naming the build command
    if running is None and not json_:
        console.print(
            f"starting Kubernetes {KUBERNETES_VERSION} and KEDA {KEDA_VERSION} on loopback ..."
        )
    started = time.monotonic()
    state = cluster.start(timeout=timeout)
    info = {
        "running": True,
        "reused": running is not None,
        "seconds": round(time.monotonic() - started, 1),
        **vars(state),
    }
    _report(info, json_)
    if not json_:
        console.print(f"\nexport KUBECONFIG={state.kubeconfig}", highlight=False)


@app.command()
def stop(json_: JsonFlag = False) -> None:
    """Stop the cluster this checkout started, by its PIDs. Never touches another process."""
    stopped = _local().stop()
    if json_:
        emit_json({"stopped": stopped})
    else:
        console.print("cluster stopped" if stopped else "no cluster was running")


@app.command()
def status(json_: JsonFlag = False) -> None:
    """Print the kubeconfig, versions, ports, PIDs and health; exit 1 when not running."""
    cluster = _local()
    state = cluster.status()
    try:
        built = built_bin().is_dir()
    except ClusterNotBuiltError:
        built = False
    if state is None:
        info: dict[str, Any] = {"running": False, "built": built, "versions": _versions()}
        if json_:
            emit_json(info)
            raise typer.Exit(1)
        how = (
            "`expediter dev cluster start`"
            if built
            else ("`expediter dev cluster build`, then `expediter dev cluster start`")
        )
        fail(f"no local cluster is running: start one with {how}")
    api = cluster.api(state)
    health = {
        "readyz": api.ready(),
        "external_metrics": api.apiservice_available(EXTERNAL_METRICS_APISERVICE),
        "server_version": api.version(),
    }
    if state.nodes:
        health["node"] = cluster.node_running(state)
    healthy = bool(health["readyz"] and health["external_metrics"] and health.get("node", True))
    info = {"running": True, "healthy": healthy, **vars(state), "health": health}
    listing = cluster_pods(api)
    _report({**info, **(listing if json_ else pod_lines(listing))}, json_)
    if not healthy:
        raise typer.Exit(1)


def _report(info: dict[str, Any], json_: bool) -> None:
    if json_:
        emit_json(info)
        return
    for key, value in info.items():
        if value in (None, [], "", {}):
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        if isinstance(value, list) and value and isinstance(value[0], str):
            value = "\n".join(
                (" " * 17 if n else "") + line for n, line in enumerate(value)
            )  # fmt: skip
        console.print(f"[bold]{key:>16}[/] {value}", highlight=False)
