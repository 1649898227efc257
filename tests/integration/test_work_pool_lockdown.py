"""A flow run created through the Prefect API cannot make a worker run a command of its choosing.

Prefect's default process template lets every flow run set ``command``, ``env`` and
``working_dir``: anyone who reaches the API could run a shell command as the worker's user. The
pools' template fixes them; each job variable a run could try is refused by the API itself.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.support.platform import RunningPlatform

pytestmark = pytest.mark.integration


def probes(proof: Path) -> dict[str, object]:
    return {
        "command": f"sh -c 'id > {proof}'",
        "env": {"LD_PRELOAD": "/tmp/evil.so", "TENANTML_DATABASE__URL": "sqlite:////tmp/theirs.db"},
        "working_dir": "/tmp",
        "labels": {"owner": "attacker"},
        "stream_output": False,
    }


@pytest.mark.parametrize("variable", sorted(probes(Path("/x"))))
def test_a_run_that_sets_a_job_variable_is_refused_by_the_api(
    platform: RunningPlatform, tmp_path: Path, variable: str
) -> None:
    proof = tmp_path / "proof.txt"
    parameters = {"request_id": str(uuid.uuid4()), "worker_uuid": str(uuid.uuid4()), "epoch": 1}
    with temporary_settings({PREFECT_API_URL: platform.prefect_api_url}), pytest.raises(httpx.HTTPStatusError) as refused:
        run_deployment("training-worker/small", parameters=parameters, timeout=0,
                       job_variables={variable: probes(proof)[variable]})
    assert "Additional properties are not allowed" in str(refused.value), refused.value
    assert not proof.exists()
