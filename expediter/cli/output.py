"""Printing for the CLI: rich text for people, one JSON document for scripts, errors to stderr."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

from rich.console import Console

__all__ = ["console", "emit_json", "err_console", "fail", "wide_console"]

console = Console()
err_console = Console(stderr=True)


def emit_json(document: Any) -> None:
    """One JSON document on stdout, nothing else, so that `| jq` always works."""
    sys.stdout.write(json.dumps(document, sort_keys=True) + "\n")
    sys.stdout.flush()


def fail(message: str, *, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise SystemExit(code)


def wide_console() -> Console:
    """stdout for tables: the terminal's width, or 200 columns into a pipe or file (rich's 80
    would wrap every row of a timeline or a watch view)."""
    return console if console.is_terminal else Console(width=200, no_color=True)
