"""The orchestrator's view of the registry: a warning when a started workflow needs a capability
that no live agent serves.

Such a workflow is not refused: an agent may be scaled to zero (KEDA starts one on lag) or about
to start, and its tasks wait in their topic meanwhile. But a capability nobody has registered
for at all, or whose every instance died, is usually a mistake (a typo in a step, an agent not
deployed), and the only other sign would be the step's deadline. So the runner
(:mod:`expediter.orchestrator.running`) asks :meth:`Discovery.unserved` when it starts a
workflow and logs a warning; ``expediter submit`` and ``status`` say the same from their own
read of the registry (:mod:`expediter.cli.agents`).

The registry is read again every ``every`` seconds by a timer of the app, off the handling path:
handling a command never waits on it. Until the first read succeeds nothing is reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from expediter.messaging import Directory, TopicNames, read_registry
from expediter.settings import KafkaSettings

__all__ = ["Discovery"]

REFRESH_SECONDS = 15.0
_REPEAT_SECONDS = 60.0
"""A warning about one capability is logged at most once a minute."""


class Discovery:
    """The last registry read, and the warnings it gives; see the module docstring."""

    def __init__(self, kafka: KafkaSettings, names: TopicNames, log: logging.Logger) -> None:
        self.kafka = kafka
        self.names = names
        self.log = log
        self.directory: Directory | None = None
        self._warned: dict[str, float] = {}
        self._failed = False

    async def refresh(self) -> None:
        """Read the registry again; a failed read keeps the last view (and says so once)."""
        try:
            self.directory = await read_registry(self.kafka, self.names)
        except Exception as exc:  # advisory: never let it stop the app
            if not self._failed:
                self.log.warning("cannot read the registry %s: %s", self.names.registry, exc)
            self._failed = True
        else:
            self._failed = False

    def unserved(self, capabilities: Iterable[str]) -> list[str]:
        """The ones of ``capabilities`` no live agent served at the last read ([] before one)."""
        if self.directory is None:
            return []
        return self.directory.unserved(capabilities)

    def check(self, workflow: str, workflow_id: str, capabilities: Iterable[str]) -> list[str]:
        """Log a warning (rate-limited per capability) for the unserved ones; return them."""
        missing = self.unserved(capabilities)
        now = time.monotonic()
        due = [c for c in missing if now - self._warned.get(c, -_REPEAT_SECONDS) >= _REPEAT_SECONDS]
        if due:
            for capability in due:
                self._warned[capability] = now
            self.log.warning(
                "workflow %s (%s) needs %s, which no live agent serves: its tasks wait until "
                "one starts (`expediter agents` lists what is live)",
                workflow_id, workflow, ", ".join(due),
            )  # fmt: skip
        return missing
