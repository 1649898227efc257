"""Write benchmark results as a table into the README's Benchmarks section.

Each benchmark owns a block between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``; running
it replaces only its own block, so benchmarks can run separately.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
HEADERS = ("metric", "value", "peer", "peer value", "ratio", "date")


def table(rows: Sequence[Sequence[object]], headers: Sequence[str] = HEADERS) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def row(metric: str, value: float, unit: str, peer: str, peer_value: float | None, higher_is_better: bool) -> list[str]:
    """One line: our value, the peer's from the same run, and how many times better we are."""
    if peer_value is None or value == 0 or peer_value == 0:
        ratio = "-"
    else:
        ratio = f"{(value / peer_value if higher_is_better else peer_value / value):.2f}x"
    shown_peer = "-" if peer_value is None else f"{peer_value:.3g} {unit}"
    return [metric, f"{value:.3g} {unit}", peer, shown_peer, ratio, dt.date.today().isoformat()]


def write_section(name: str, title: str, body: str, readme: Path = README) -> None:
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n### {title}\n\n{body}\n{end}"
    text = readme.read_text() if readme.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    elif "## Benchmarks" in text:  # the last section: new blocks go at its end
        text = text.rstrip() + f"\n\n{block}\n"
    else:
        text = text.rstrip() + f"\n\n## Benchmarks\n\n{block}\n"
    readme.write_text(text)
