"""The orchestrator: publishes task events and joins the agents' results, on Faust.

Called by the CLI (``expediter orchestrator``, ``submit``, ``status``). What a workflow file
declares (:class:`~expediter.authoring.Workflow`, steps, joins) lives in
:mod:`expediter.authoring` and is imported from :mod:`expediter`.
"""

__all__: list[str] = []
