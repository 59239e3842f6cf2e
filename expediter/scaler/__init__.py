"""``expediter scaler``: a KEDA external scaler that scales agents on pending work, in tokens.

Modules: :mod:`~expediter.scaler.tailing` (pending tokens of one capability, read incrementally
from Kafka), :mod:`~expediter.scaler.serving` (the gRPC service of KEDA's externalscaler.proto),
:mod:`~expediter.scaler.readiness` (replicas still loading their model, from the Deployment's
status). The arithmetic lives in :mod:`expediter.scaling` (estimating, summing, measuring,
working), pure and shared with the engine and the bench.

The stubs ``externalscaler_pb2.py``, ``externalscaler_pb2.pyi`` and ``externalscaler_pb2_grpc.py``
are generated from ``externalscaler.proto``, a verbatim copy of kedacore/keda v2.21.0
``pkg/scalers/externalscaler/externalscaler.proto``, and committed (so installing needs no
protoc). Regenerate them from the repository root with grpcio-tools (a dev dependency)::

    .venv/bin/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. \\
        --grpc_python_out=. expediter/scaler/externalscaler.proto

tests/unit/test_external_scaler.py fails when the committed stubs differ from that output.
"""

from __future__ import annotations

from expediter.scaler.serving import ExternalScaler, ScalerReport, serve
from expediter.scaler.tailing import WorkTail

__all__ = ["ExternalScaler", "ScalerReport", "WorkTail", "serve"]
