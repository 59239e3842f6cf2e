"""The agent worker: runs one agent as a stateless consumer of ``tasks.<capability>``.

Called by the CLI (``expediter worker agents/<file>.py``). What an agent file declares
(:class:`~expediter.authoring.Agent`, :class:`~expediter.authoring.TaskContext`) lives in
:mod:`expediter.authoring` and is imported from :mod:`expediter`.
"""

__all__: list[str] = []
