"""Expediter: AI agents as event-driven consumers on Apache Kafka, autoscaled by KEDA.

The public surface is small and re-exported here; everything else is private to its module.
An agent file and a workflow file import what they declare from here only::

    from expediter import Agent, AgentResources, TaskContext, tool
    from expediter import All, Approval, Group, Parallel, Step, Workflow, WorkflowState
"""

from expediter.authoring import (
    Agent,
    AgentResources,
    All,
    Any_,
    Approval,
    Group,
    Handler,
    InvalidInputError,
    Join,
    Parallel,
    PermanentError,
    Quorum,
    RetriableError,
    Step,
    StepState,
    TaskContext,
    Tool,
    ToolCaller,
    Workflow,
    WorkflowState,
    load_agent,
    load_agents,
    load_workflows,
    tool,
)
from expediter.errors import (
    AuthenticationError,
    BrokerError,
    BrokerUnavailableError,
    ConfigurationError,
    DecodeError,
    ExpediterError,
    LocalBrokerError,
    SchemaCompatibilityError,
    ToolMissingError,
)
from expediter.events import (
    AgentCard,
    DeadLetter,
    Producer,
    ResultEvent,
    TaskError,
    TaskEvent,
    WorkflowEvent,
    decode,
    encode,
    to_record,
)
from expediter.settings import DevSettings, KafkaSettings, SaslSettings, TlsSettings

__all__ = [
    "Agent",
    "AgentCard",
    "AgentResources",
    "All",
    "Any_",
    "Approval",
    "AuthenticationError",
    "BrokerError",
    "BrokerUnavailableError",
    "ConfigurationError",
    "DeadLetter",
    "DecodeError",
    "DevSettings",
    "ExpediterError",
    "Group",
    "Handler",
    "InvalidInputError",
    "Join",
    "KafkaSettings",
    "LocalBrokerError",
    "Parallel",
    "PermanentError",
    "Producer",
    "Quorum",
    "ResultEvent",
    "RetriableError",
    "SaslSettings",
    "SchemaCompatibilityError",
    "Step",
    "StepState",
    "TaskContext",
    "TaskError",
    "TaskEvent",
    "TlsSettings",
    "Tool",
    "ToolCaller",
    "ToolMissingError",
    "Workflow",
    "WorkflowEvent",
    "WorkflowState",
    "__version__",
    "decode",
    "encode",
    "load_agent",
    "load_agents",
    "load_workflows",
    "to_record",
    "tool",
]

__version__ = "0.1.0"
"""The one place the version is written: pyproject.toml reads it from here (CHANGELOG.md)."""
