"""The orchestrator: publishes task events and joins the agents' results, on Faust.

Workflow files import :class:`Workflow`, :class:`Step`, :class:`Parallel` and the joins from
here. Called by the CLI (``expediter orchestrator``, ``submit``, ``status``).
"""

from expediter.orchestrator.defining import All, Any_, Join, Parallel, Quorum, Step, Workflow
from expediter.orchestrator.state import StepState, WorkflowState

__all__ = [
    "All",
    "Any_",
    "Join",
    "Parallel",
    "Quorum",
    "Step",
    "StepState",
    "Workflow",
    "WorkflowState",
]
