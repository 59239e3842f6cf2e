"""The agent worker: runs one agent as a stateless consumer of ``tasks.<capability>``.

Called by the CLI (``expediter worker agents/<file>.py``). Agent files import :class:`Agent`,
:class:`TaskContext` and the errors from here.
"""

from expediter.errors import PermanentError, RetriableError
from expediter.events import AgentResources
from expediter.worker.defining import Agent, TaskContext, ToolCaller

__all__ = [
    "Agent",
    "AgentResources",
    "PermanentError",
    "RetriableError",
    "TaskContext",
    "ToolCaller",
]
