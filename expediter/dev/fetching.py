"""Fetching Apache Kafka's broker jars from Maven Central into a cache outside the repository.

The version of Kafka the project runs is recorded here, in :data:`KAFKA_VERSION`, and nowhere
else. Called by :mod:`expediter.dev.running` before a local broker starts, and by
``expediter dev kafka fetch``. The first fetch takes about half a minute; later starts find the
jars in the cache and take seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from expediter.errors import LocalBrokerError, ToolMissingError

__all__ = ["KAFKA_VERSION", "cache_root", "fetch_kafka", "require_tool"]

KAFKA_VERSION = "4.1.1"
"""Apache Kafka 4.1.1: KRaft only, and tested here with aiokafka 0.14 (produce, consume,
groups, compaction, SCRAM). 3.9.x is the fallback should a client need the older protocols."""

_COMPLETE = ".complete"

_INSTALL_HINTS = {
    "java": "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)",
    "mvn": "install Maven (Debian: apt-get install maven), or set EXPEDITER_BOOTSTRAP "
    "to use an existing Kafka cluster",
}


def require_tool(name: str) -> str:
    """The path of ``name`` on PATH, or a one-line ToolMissingError saying what to install."""
    path = shutil.which(name)
    if path is None:
        raise ToolMissingError(f"`{name}` not found on PATH: {_INSTALL_HINTS[name]}")
    return path


def cache_root() -> Path:
    """``$EXPEDITER_CACHE_DIR``, else ``$XDG_CACHE_HOME/expediter``, else ``~/.cache/expediter``."""
    explicit = os.environ.get("EXPEDITER_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "expediter"


def fetch_kafka(version: str = KAFKA_VERSION, *, cache: Path | None = None) -> Path:
    """Return the folder of Kafka ``version``'s jars, fetching them first if not cached.

    The fetch lands in a temporary folder that is renamed into place only when Maven succeeded,
    so an interrupted fetch never leaves a half-filled cache behind.
    """
    libs = (cache or cache_root()) / f"kafka-{version}" / "libs"
    if (libs / _COMPLETE).exists():
        return libs
    mvn = require_tool("mvn")
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=libs.parent))
    pom = resources.files("expediter.dev").joinpath("kafka-pom.xml")
    try:
        with resources.as_file(pom) as pom_path:
            result = subprocess.run(
                [
                    mvn, "-q", "-B", "-f", str(pom_path),
                    f"-Dkafka.version={version}",
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={staging}",
                    "-DincludeScope=runtime",
                ],
                capture_output=True,
                text=True,
                check=False,
            )  # fmt: skip
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
            raise LocalBrokerError(
                f"Maven could not fetch org.apache.kafka:kafka_2.13:{version} "
                "(check that Maven Central is reachable):\n" + "\n".join(tail)
            )
        (staging / _COMPLETE).write_text(version)
        if libs.exists() and not (libs / _COMPLETE).exists():
            shutil.rmtree(libs)  # left by a fetch from before the staging rename existed
        try:
            staging.rename(libs)
        except OSError:
            # Another process finished the same fetch first; its copy is as good as ours.
            if not (libs / _COMPLETE).exists():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return libs
