"""`train --wait` off a terminal (a CI log, a pipe): plain progress lines, on each change and periodically."""

from __future__ import annotations

import pytest

from tenantml.cli import output
from tenantml.cli.output import progress_bar


def test_off_a_terminal_progress_is_a_line_per_change_and_one_every_interval(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [0.0]
    monkeypatch.setattr(output.time, "monotonic", lambda: clock[0])
    with progress_bar(plain_every_s=10) as show:
        show("pending (waiting for a worker)", 0, None, 0)
        show("running (attempt 1)", 10, 100, 1)
        clock[0] = 5.0
        show("running (attempt 1)", 50, 100, 1)  # same state within the interval: nothing
        clock[0] = 11.0
        show("running (attempt 1)", 60, 100, 1)
        show("completed (version 1, 1 attempt)", 100, 100, 1)
    assert capsys.readouterr().err.splitlines() == [
        "pending (waiting for a worker): step 0/?",
        "running (attempt 1): step 10/100 (10%)",
        "running (attempt 1): step 60/100 (60%)",
        "completed (version 1, 1 attempt): step 100/100 (100%)",
    ]


def test_json_output_has_no_progress_at_all(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bar(enabled=False) as show:
        show("running (attempt 1)", 10, 100, 1)
    assert capsys.readouterr().err == ""
