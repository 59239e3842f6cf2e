"""Running the tools agents call, and the ledger that makes their side effects run once per task.

:func:`expediter.tool` (in :mod:`expediter.authoring.tools`) declares a tool; an agent lists its
tools in ``Agent(tools=[...])``, its allowlist. The worker gives each task a
:class:`ToolBox` (allowlist, pydantic validation, replay) backed by one :class:`ToolLedger` (a
compacted Kafka topic of call records keyed by task id, step and call index). Imports
messaging, events, settings and errors; called by the worker and agent files.
"""

from expediter.tools.ledger import LedgerEntry, ToolLedger, ledger_key
from expediter.tools.toolbox import ToolBox

__all__ = ["LedgerEntry", "ToolBox", "ToolLedger", "ledger_key"]
