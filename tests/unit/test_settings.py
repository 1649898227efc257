"""Settings from TENANTML_* variables: nested sections, errors that name the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tenantml.errors import InvalidSetting
from tenantml.settings import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TENANTML_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_nested_sections_are_read_with_a_double_underscore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTML_TRAINING__HEARTBEAT_TIMEOUT_S", "2.5")
    monkeypatch.setenv("TENANTML_TRAINING__ATTEMPT_BUDGET", "7")
    monkeypatch.setenv("TENANTML_PREFECT__SMALL_WORKERS", "4")
    monkeypatch.setenv("TENANTML_MLFLOW__TRACKING_URI", "http://127.0.0.1:5999")
    settings = load_settings()
    assert (settings.training.heartbeat_timeout_s, settings.training.attempt_budget) == (2.5, 7)
    assert settings.training.checkpoint_interval_s == 5.0  # untouched fields keep their defaults
    assert settings.prefect.small_workers == 4
    assert settings.mlflow.tracking_uri == "http://127.0.0.1:5999"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TENANTML_TRAINING__HEARTBEAT_TIMEOUT_S", "soon"),
        ("TENANTML_TRAINING__ATTEMPT_BUDGET", "-1"),
        ("TENANTML_SERVING__PORT", "70000"),
    ],
)
def test_invalid_value_names_the_variable_and_the_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidSetting, match=variable) as caught:
        load_settings()
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize("variable", ["TENANTML_TRAINING__NO_SUCH_KNOB", "TENANTML_NO_SUCH_SECTION"])
def test_unknown_variable_is_rejected(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "1")
    with pytest.raises(InvalidSetting, match=variable):
        load_settings()


def test_malformed_section_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTML_TRAINING", "{not json")
    with pytest.raises(InvalidSetting, match="TENANTML_TRAINING"):
        load_settings()


def test_api_key_is_accepted_and_kept_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTML_API_KEY", "tml_secret-value")
    settings = load_settings()
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "tml_secret-value"
    assert "tml_secret-value" not in repr(settings)


def test_database_url_defaults_to_sqlite_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert load_settings().database_url == f"sqlite:///{tmp_path / '.tenantml' / 'tenantml.db'}"
    monkeypatch.setenv("TENANTML_HOME", str(tmp_path / "home"))
    settings = load_settings()
    assert settings.database_url == f"sqlite:///{tmp_path / 'home' / 'tenantml.db'}"
    assert settings.datasets_root == tmp_path / "home" / "datasets"
    monkeypatch.setenv("TENANTML_DATABASE__URL", "postgresql+psycopg://postgres@127.0.0.1:5432/tenantml")
    assert load_settings().database_url == "postgresql+psycopg://postgres@127.0.0.1:5432/tenantml"


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TENANTML_HOME", str(tmp_path / "from-env"))
    assert load_settings(home=tmp_path / "given").home == tmp_path / "given"


def test_a_child_loads_equal_settings_from_to_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path / "home",
        api_key="tml_child-key",
        database={"url": "postgresql+psycopg://u:pw@db/tenantml"},
        prefect={"api_url": "http://127.0.0.1:4200/api", "fork_server": False, "small_workers": 0},
        training={"heartbeat_timeout_s": 2.5, "small_memory_limit_mb": 700},
        serving={"champion_refresh_s": 0.25},
    )
    env = settings.to_env()
    assert env["TENANTML_DATABASE__URL"] == "postgresql+psycopg://u:pw@db/tenantml"  # secrets as their values
    assert "TENANTML_MLFLOW__TRACKING_URI" not in env  # unset stays unset
    for name, value in env.items():  # the child's environment: made of to_env() alone
        monkeypatch.setenv(name, value)
    assert load_settings() == settings
    assert load_settings().to_env() == env


def test_to_env_can_keep_only_the_fields_given() -> None:
    settings = load_settings(mlflow={"tracking_uri": "http://127.0.0.1:5999"})
    assert settings.to_env(exclude_unset=True) == {"TENANTML_MLFLOW__TRACKING_URI": "http://127.0.0.1:5999"}




def test_the_local_platforms_project_folder_is_not_an_unknown_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TENANTML_PROJECT_DIR", str(tmp_path))
    assert "TENANTML_PROJECT_DIR" not in load_settings().to_env()
