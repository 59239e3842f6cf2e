"""The names of topics and consumer groups, derived in one place.

The topic catalog (topics/topics.yaml) lists the same names; code derives them here so that a
prefix (``EXPEDITER_TOPIC_PREFIX``: a test run, a shadow re-run under ``expediter replay --rerun
--into <prefix>``) moves a whole deployment at once. Called by the worker, the orchestrator, the
supervisor, the deploy renderer, the history tools (trace, dlq, re-runs) and the CLI.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["TopicNames"]

_WORKFLOW_TOPIC = re.compile(
    r"^(?:tasks\.[^.]+|retry\.[^.]+\.[^.]+|dlq\.[^.]+|results|workflows\.events"
    r"|workflows\.completed|approvals\.decisions)$"
)
"""The topics, under the prefix, whose records are keyed by workflow id and carry its history:
task topics and their retry tiers, dead letters, results, the orchestrator's events and
completions, and people's approval decisions (topics/topics.yaml)."""


@dataclass(frozen=True)
class TopicNames:
    """Topic and group names under an optional ``prefix`` (empty in production)."""

    prefix: str = ""

    def tasks(self, capability: str) -> str:
        return f"{self.prefix}tasks.{capability}"

    def dlq(self, capability: str) -> str:
        return f"{self.prefix}dlq.{capability}"

    def dlq_named(self, name: str) -> str:
        """The DLQ a person names: a capability (``probe`` -> ``<prefix>dlq.probe``, and
        ``orchestrator``), or a DLQ topic's own name, taken as it is."""
        return name if "dlq." in name else self.dlq(name)

    def group(self, capability: str) -> str:
        """The consumer group of an agent; KEDA's trigger watches its lag."""
        return f"{self.prefix}agents.{capability}"

    @property
    def results(self) -> str:
        return f"{self.prefix}results"

    @property
    def registry(self) -> str:
        return f"{self.prefix}registry"

    @property
    def ledger(self) -> str:
        """Tool-call records, by (task id, step, n); compacted."""
        return f"{self.prefix}tools.ledger"

    @property
    def completed(self) -> str:
        """One record per finished workflow: request-reply for `expediter submit --wait`."""
        return f"{self.prefix}workflows.completed"

    @property
    def commands(self) -> str:
        """Requests to the orchestrator (start a workflow, expire a step); keyed by workflow id."""
        return f"{self.prefix}workflows.commands"

    @property
    def workflow_events(self) -> str:
        """The orchestrator's WorkflowEvents: the history `expediter trace` reads."""
        return f"{self.prefix}workflows.events"

    @property
    def approval_requests(self) -> str:
        """Open approval requests, keyed by request id (compacted; a tombstone resolves one)."""
        return f"{self.prefix}approvals.requests"

    @property
    def approval_decisions(self) -> str:
        """People's decisions on approval requests; keyed by workflow id, co-partitioned."""
        return f"{self.prefix}approvals.decisions"

    @property
    def orchestrator_dlq(self) -> str:
        """Commands and results the orchestrator could not handle (`expediter dlq list
        orchestrator`)."""
        return self.dlq("orchestrator")

    @property
    def changelog(self) -> str:
        """The Faust workflow table's changelog (Faust names it after app id and table)."""
        return f"{self.prefix}expediter-orchestrator-workflows-changelog"

    def workflow_topics(self, topics: Iterable[str]) -> list[str]:
        """Those of ``topics`` under this prefix that carry workflow records, sorted."""
        start = len(self.prefix)
        return sorted(
            name
            for name in topics
            if name.startswith(self.prefix) and _WORKFLOW_TOPIC.match(name[start:])
        )
