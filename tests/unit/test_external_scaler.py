"""expediter/scaler's committed gRPC stubs are what grpcio-tools makes of KEDA's proto."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCALER = ROOT / "expediter" / "scaler"
GENERATED = ("externalscaler_pb2.py", "externalscaler_pb2.pyi", "externalscaler_pb2_grpc.py")


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    package = tmp_path / "expediter" / "scaler"
    package.mkdir(parents=True)
    shutil.copy(SCALER / "externalscaler.proto", package)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", ".", "--python_out=.", "--pyi_out=.",
         "--grpc_python_out=.", "expediter/scaler/externalscaler.proto"],
        cwd=tmp_path, check=True,
    )  # fmt: skip
    for name in GENERATED:
        assert (package / name).read_text() == (SCALER / name).read_text(), (
            f"expediter/scaler/{name} differs from the proto's stubs: regenerate them with the "
            "command in expediter/scaler/__init__.py"
        )


def test_the_service_is_keda_s_external_scaler() -> None:
    from expediter.scaler import externalscaler_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["ExternalScaler"]
    assert service.full_name == "externalscaler.ExternalScaler"  # the path KEDA calls
    assert {m.name for m in service.methods} >= {
        "IsActive", "StreamIsActive", "GetMetricSpec", "GetMetrics"
    }  # fmt: skip


def test_expediter_scaler_refuses_a_taken_port() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "expediter.cli", "scaler", "--address", f"127.0.0.1:{port}"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "cannot listen on" in done.stderr
