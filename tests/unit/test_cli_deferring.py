"""The command line lists every command from its table and loads a command when it runs.

``expediter --help`` prints each command's first paragraph of help from expediter.cli's table
(without importing the command's module); these tests hold that table to the commands' own help,
and check that every listed command resolves and runs its own --help.
"""

from __future__ import annotations

import inspect

import pytest
import typer
from typer.core import TyperCommand, TyperGroup
from typer.testing import CliRunner

from expediter.cli import COMMANDS, DEV_COMMANDS, app
from expediter.cli.deferring import Deferred, load_deferred

TABLE = [(name, entry) for name, entry in COMMANDS.items() if name != "dev"] + [
    (f"dev {name}", entry) for name, entry in DEV_COMMANDS.items()
]


def first_paragraph(command: TyperCommand | TyperGroup) -> str:
    return inspect.cleandoc(command.short_help or command.help or "").split("\n\n")[0].strip()


@pytest.mark.parametrize(("name", "entry"), TABLE, ids=[name for name, _ in TABLE])
def test_each_listed_help_is_the_commands_own(name: str, entry: Deferred) -> None:
    command = load_deferred(name.split()[-1], entry)
    assert command.name == name.split()[-1]
    assert entry.help == first_paragraph(command), f"update {name}'s line in expediter/cli"


def listed(words: list[str]) -> list[str]:
    """The command names in the Commands panel of ``expediter <words> --help``."""
    result = CliRunner().invoke(app, [*words, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    panel = result.output.split("Commands")[1].splitlines()[1:]
    # A row starts with its name; a wrapped description's next line starts with spaces.
    return [line[2:].split()[0] for line in panel if line.startswith("│ ") and line[2] != " "]


def test_help_lists_every_command_in_order() -> None:
    assert listed([]) == list(COMMANDS)
    assert listed(["dev"]) == list(DEV_COMMANDS)


@pytest.mark.parametrize("words", [["worker"], ["topics", "check"], ["dev", "kafka", "status"]])
def test_a_command_resolves_and_answers_help(words: list[str]) -> None:
    result = CliRunner().invoke(app, [*words, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Usage: expediter " + " ".join(words) in " ".join(result.output.split())


def test_an_unknown_command_is_refused_with_the_usage() -> None:
    result = CliRunner().invoke(app, ["wroker"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_the_root_group_resolves_each_command() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    context = typer.Context(root)
    for name in COMMANDS:
        assert root.get_command(context, name) is not None, name
