"""`tenantml workers`: the provisioner's last decision per class, as JSON and as a table; the operator's only."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tenantml.adapters.database import create_database
from tenantml.adapters.fleet_records import FleetRecord, FleetRecords
from tenantml.cli import app
from tenantml.domain.provisioning import ScalingDecision

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh TENANTML_HOME, and no other TENANTML_* or PREFECT_* variable: no platform is running."""
    for name in [n for n in os.environ if n.startswith(("TENANTML_", "PREFECT_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TENANTML_HOME", str(tmp_path))
    return tmp_path


def tenantml(*args: str, api_key: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env={"TENANTML_API_KEY": api_key})


def test_workers_shows_each_class_s_last_decision(home: Path) -> None:
    records = FleetRecords(create_database(f"sqlite:///{home.resolve() / 'tenantml.db'}"))
    assert json.loads(tenantml("workers", "--json").stdout) == []
    reason = "3 pending + 0 running need 3 workers; capped at max 2: up to 2"
    records.record_fleet([
        FleetRecord(ScalingDecision("small", NOW, 1, 2, need=3, busy=0, minimum=1, maximum=2, reason=reason),
                    draining=0, restarts=1, changed_at=NOW),
        FleetRecord(ScalingDecision("large", NOW, 0, 0, need=0, busy=0, minimum=0, maximum=1,
                                    reason="queue empty, nothing running: stay at 0")),
    ])
    large, small = json.loads(tenantml("workers", "--json").stdout)
    assert small == {"worker_class": "small", "current": 1, "desired": 2, "min": 1, "max": 2, "busy": 0, "need": 3,
                     "decided_at": NOW.isoformat(), "reason": reason, "draining": 0, "restarts": 1,
                     "changed_at": NOW.isoformat()}
    assert (large["desired"], large["changed_at"]) == (0, None)
    table = tenantml("workers").stdout.splitlines()
    assert table[0].split()[:8] == ["class", "current", "desired", "min", "max", "busy", "draining", "restarts"]
    assert table[2].split()[:8] == ["small", "1", "2", "1", "2", "0", "0", "1"] and table[2].endswith(reason)


def test_workers_is_refused_with_a_tenant_key(home: Path) -> None:
    result = tenantml("workers", api_key="tm_some-tenant-key")
    assert result.exit_code != 0 and "operator" in str(result.exception)
