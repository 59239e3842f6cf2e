"""Command groups that import a command's module only when that command runs.

``expediter worker`` should not pay for Faust, kopf, kubernetes and gRPC that other commands
use: the worker's image is sized by what its process holds. A :func:`deferred_group` lists its
commands from a table of :class:`Deferred` entries (the module, the attribute and the one line
of help ``--help`` shows), and imports a module when click resolves its command. ``--help``
lists every command from the table without importing any; tests/unit/test_cli_deferring.py
checks that each table line is the command's own help.

Used by :mod:`expediter.cli` for the top-level app and the ``dev`` group.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import typer
from typer.core import TyperCommand, TyperGroup

__all__ = ["Deferred", "deferred_group", "load_deferred"]


@dataclass(frozen=True)
class Deferred:
    """A command in ``module``: ``attribute`` is a ``typer.Typer`` (a group) or a function (a
    command); ``help`` is its first paragraph of help, as ``--help`` lists it."""

    module: str
    attribute: str
    help: str


def load_deferred(name: str, entry: Deferred) -> TyperCommand | TyperGroup:
    """Import ``entry``'s module and build its click command, named ``name``."""
    target: Any = getattr(importlib.import_module(entry.module), entry.attribute)
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)
        group.name = name
        return group
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command(name=name)(target)
    # One command and no callback: typer builds that command itself, not a group around it.
    return cast(TyperCommand, typer.main.get_command(single))


class _DeferredGroup(TyperGroup):
    # Contexts and commands are typed Any: they are click's, which newer typer versions vendor
    # privately (typer._click), so neither import path holds across typer's supported range.
    table: Mapping[str, Deferred] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self.commands, *(name for name in self.table if name not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = self.commands.get(cmd_name)
        if command is not None:
            return command
        entry = self.table.get(cmd_name)
        if entry is None:
            return None
        if self._listing:  # help only lists it: its one line, without importing its module
            return TyperCommand(cmd_name, short_help=entry.help, help=entry.help)
        command = load_deferred(cmd_name, entry)
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def deferred_group(table: Mapping[str, Deferred]) -> type[TyperGroup]:
    """A group class for ``typer.Typer(cls=...)`` whose commands come from ``table``."""
    return type("DeferredGroup", (_DeferredGroup,), {"table": dict(table)})
