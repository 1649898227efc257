"""The fleet's settings and the provisioner's loop around them: bounds checked at load, naming the
setting; fixed counts when the provisioner is off; no fleet change while the Prefect API is down."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tenantml.errors import InvalidSetting, ServiceUnavailable
from tenantml.local.fleet import FleetLoop, policies
from tenantml.local.processes import claim_port
from tenantml.settings import load_settings


def test_the_defaults_keep_one_small_worker_and_the_fixed_fleet_s_peak() -> None:
    fleet = load_settings().fleet
    assert fleet.provisioner
    assert (fleet.bounds("small"), fleet.bounds("large")) == ((1, 2), (0, 1))
    assert fleet.interval_s <= 2  # with a worker's start-up of a few seconds: a backlog served within 10 s


def test_a_minimum_above_the_maximum_is_refused_naming_both_settings() -> None:
    with pytest.raises(InvalidSetting, match="TENANTML_FLEET__LARGE_MIN 2 is above TENANTML_FLEET__LARGE_MAX 1"):
        load_settings(fleet={"large_min": 2})


def test_a_negative_count_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTML_FLEET__SMALL_MAX", "-1")
    with pytest.raises(InvalidSetting, match="TENANTML_FLEET__SMALL_MAX: Input should be greater than or equal to 0"):
        load_settings()


def test_policies_follow_the_settings_or_pin_the_fixed_counts() -> None:
    settings = load_settings(fleet={"small_min": 0, "small_max": 4, "cooldown_s": 7}, prefect={"runs_per_worker": 2})
    small = policies(settings)["small"]
    assert (small.minimum, small.maximum, small.cooldown_s, small.runs_per_worker) == (0, 4, 7, 2)
    fixed = policies(settings, {"small": 3, "large": 1})
    assert [(p.minimum, p.maximum) for p in fixed.values()] == [(3, 3), (1, 1)]


@dataclass
class Untouchable:
    """A fleet that fails the test if the loop touches it."""

    def reap(self) -> None:
        raise AssertionError("a worker was reaped while the Prefect API was down")


def test_a_pass_changes_nothing_while_the_prefect_api_does_not_answer(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{claim_port('nothing', 0)}/api"
    loop = FleetLoop(Untouchable(), provisioner=None, records=None, prefect_api_url=closed,  # type: ignore[arg-type]
                     interval_s=1)
    with pytest.raises(ServiceUnavailable, match="did not answer.*no worker is started, replaced or stopped"):
        loop.tick(datetime.now(UTC))
