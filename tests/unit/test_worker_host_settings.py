"""Worker hosts' settings: the bind address, the declared remote slots, and what `tenantml worker start` needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantml.errors import InvalidSetting
from tenantml.local.project import project_dir
from tenantml.local.worker_host import CLIENT_VARIABLES, host_env
from tenantml.local.workers import LocalWorkers
from tenantml.settings import load_settings

ADDRESSES = {"prefect": {"api_url": "http://10.0.0.5:4200/api"}, "mlflow": {"tracking_uri": "http://10.0.0.5:5000"},
             "database": {"url": "postgresql+psycopg://u@10.0.0.6/tml"}}
CREDENTIALS = {"PREFECT_API_AUTH_STRING": "a:b", "MLFLOW_TRACKING_USERNAME": "p", "MLFLOW_TRACKING_PASSWORD": "s"}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", ""])
def test_a_bind_host_clients_cannot_call_is_refused_naming_the_setting(host: str) -> None:
    with pytest.raises(InvalidSetting, match="TENANTML_BIND_HOST"):
        load_settings(bind_host=host)


def test_declared_remote_workers_add_slots_beside_the_local_ones(tmp_path: Path) -> None:
    settings = load_settings(prefect={"small_workers": 0, "remote_small_workers": 2, "remote_large_workers": 1,
                                      "runs_per_worker": 2})
    workers = LocalWorkers(settings.prefect, {}, tmp_path, tmp_path)
    assert workers.slots() == {"small": 4, "large": 2}


def test_a_worker_host_names_each_server_address_it_lacks(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, prefect=ADDRESSES["prefect"])
    with pytest.raises(InvalidSetting) as raised:
        host_env(settings, tmp_path, project_dir(), CREDENTIALS)
    assert "TENANTML_MLFLOW__TRACKING_URI, TENANTML_DATABASE__URL" in str(raised.value)


def test_a_worker_host_names_each_credential_it_lacks_and_passes_those_it_has(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, **ADDRESSES)
    with pytest.raises(InvalidSetting, match="MLFLOW_TRACKING_PASSWORD to the values .*credentials.env"):
        host_env(settings, tmp_path, project_dir(), {k: v for k, v in CREDENTIALS.items() if k != CLIENT_VARIABLES[2]})
    env = host_env(settings, tmp_path, project_dir(), CREDENTIALS)
    assert {k: env[k] for k in CREDENTIALS} == CREDENTIALS
    assert env["PREFECT_API_URL"] == "http://10.0.0.5:4200/api" and env["MLFLOW_TRACKING_URI"] == "http://10.0.0.5:5000"
    assert env["PREFECT_HOME"] == str(tmp_path / "prefect")
