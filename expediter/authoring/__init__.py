"""What authors write: agents, workflows and tools, and the one loader that reads their files.

An agent file and a workflow file import from :mod:`expediter` only, which re-exports these
names. Everything here is plain Python and pydantic: no Kafka client, no Faust (an
import-linter contract keeps it so), so definitions load as fast in a unit test or the KEDA
renderer as in a worker. Imports events, errors and (for types only) reasoning; called by agent
and workflow files, the worker, the orchestrator, the deploying renderer and replay.
"""

from expediter.authoring.agents import Agent, Handler, TaskContext, ToolCaller
from expediter.authoring.approvals import Approval, Group
from expediter.authoring.loading import load_agent, load_agents, load_workflows
from expediter.authoring.scaling import AgentScaling, Estimator, ScalingSignal
from expediter.authoring.state import StepState, WorkflowState
from expediter.authoring.tools import Tool, tool
from expediter.authoring.workflows import (
    All,
    Any_,
    InvalidInputError,
    Join,
    Parallel,
    Quorum,
    Step,
    Workflow,
)
from expediter.errors import PermanentError, RetriableError
from expediter.events import AgentResources

__all__ = [
    "Agent",
    "AgentResources",
    "AgentScaling",
    "All",
    "Any_",
    "Approval",
    "Estimator",
    "Group",
    "Handler",
    "InvalidInputError",
    "Join",
    "Parallel",
    "PermanentError",
    "Quorum",
    "RetriableError",
    "ScalingSignal",
    "Step",
    "StepState",
    "TaskContext",
    "Tool",
    "ToolCaller",
    "Workflow",
    "WorkflowState",
    "load_agent",
    "load_agents",
    "load_workflows",
    "tool",
]
