"""How commands print: JSON for scripts, tables for people, a progress bar while waiting.

On a terminal a table has a ruled header and bold titles; on a pipe or a file it is plain aligned
text without colour or box, as wide as it needs, so ``grep``, ``head`` and tests read it as text.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

__all__ = ["JsonOption", "ProgressUpdate", "format_metrics", "print_json", "print_table", "progress_bar"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

ProgressUpdate = Callable[[str, int, "int | None", int], None]
"""``update(status, step, total_steps, attempt)``: what a waiting command shows of its training."""

PLAIN_WIDTH = 10_000
"""Off a terminal a line is never wrapped: a pipe has no width."""


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def format_metrics(metrics: Mapping[str, float]) -> str:
    return " ".join(f"{name}={value:.4g}" for name, value in sorted(metrics.items()))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Rows under their headers; a cell of None is left empty, every cell is text (never rich markup)."""
    console = Console(highlight=False)
    terminal = console.is_terminal
    if not terminal:
        console = Console(highlight=False, width=PLAIN_WIDTH, no_color=True)
    table = Table(box=box.SIMPLE_HEAD if terminal else None, show_edge=False, pad_edge=False,
                  header_style="bold" if terminal else "")
    for header in headers:
        table.add_column(Text(header), no_wrap=not terminal)
    for row in rows:
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    if terminal:
        console.print(table)
        return
    with console.capture() as captured:
        console.print(table)
    print("\n".join(line.rstrip() for line in captured.get().splitlines()))


PLAIN_EVERY_S = 10.0


def _plain_lines(every_s: float) -> ProgressUpdate:
    last: dict[str, Any] = {"status": None, "at": 0.0}

    def update(status: str, step: int, total: int | None, attempt: int) -> None:
        now = time.monotonic()
        if status == last["status"] and now - last["at"] < every_s:
            return
        share = f" ({100 * step / total:.0f}%)" if total else ""
        print(f"{status}: step {step}/{total or '?'}{share}", file=sys.stderr, flush=True)
        last.update(status=status, at=now)

    return update


@contextmanager
def progress_bar(enabled: bool = True, plain_every_s: float = PLAIN_EVERY_S) -> Iterator[ProgressUpdate]:
    """Progress on stderr while the block runs, if ``enabled``: a bar with percentage and ETA on a
    terminal; elsewhere (a CI log, a pipe) a plain line on every change of state and at least
    every ``plain_every_s`` seconds while it trains."""
    if not enabled:
        yield lambda status, step, total, attempt: None
        return
    if not sys.stderr.isatty():
        yield _plain_lines(plain_every_s)
        return
    columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TimeRemainingColumn(), TextColumn("attempt {task.fields[attempt]}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("pending", total=None, attempt=1)

        def update(status: str, step: int, total: int | None, attempt: int) -> None:
            progress.update(task, description=status, completed=step, total=total or None, attempt=attempt)

        yield update
