"""The words and links that tie one training's Prefect runs, MLflow run and registered version together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tenantml.domain.request import Attempt, AttemptEnd, RequestStatus, TrainingRequest, TrainingSpec, WorkerClass
from tenantml.services.history import Links, Progress, mlflow_links, progress_text, run_description, web_root

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LINKS = Links.of("http://127.0.0.1:4200/api", "http://127.0.0.1:5000")


def _request() -> TrainingRequest:
    spec = TrainingSpec("acme", "churn", "/home/x/datasets/acme/data.csv", "label", "sgd_classifier", {}, "ab" * 32)
    attempts = [
        Attempt(1, 1, "w1", WorkerClass.SMALL, T0, "run-1", T0, T0 + timedelta(minutes=1), AttemptEnd.CRASHED),
        Attempt(2, 2, "w2", WorkerClass.LARGE, T0 + timedelta(minutes=2), "run-2", T0 + timedelta(minutes=2)),
    ]
    return TrainingRequest("req-1", spec, RequestStatus.RUNNING, T0, T0, attempts=attempts, mlflow_run_id="mlrun")


@pytest.mark.parametrize(
    ("url", "strip", "root"),
    [
        ("http://127.0.0.1:4200/api", "/api", "http://127.0.0.1:4200"),
        ("http://127.0.0.1:4200/api/", "/api", "http://127.0.0.1:4200"),
        ("https://ops.example/prefect/api", "/api", "https://ops.example/prefect"),
        ("http://admin:secret@127.0.0.1:5000", "", "http://127.0.0.1:5000"),  # never a password in a link
        ("sqlite:///mlflow.db", "", None),
        (None, "", None),
    ],
)
def test_the_web_ui_is_the_api_address_without_its_suffix_or_credentials(
    url: str | None, strip: str, root: str | None
) -> None:
    assert web_root(url, strip) == root


def test_links_have_the_forms_the_prefect_and_mlflow_uis_route() -> None:
    assert LINKS.flow_run("abc") == "http://127.0.0.1:4200/runs/flow-run/abc"
    assert LINKS.mlflow_run("3", "r1") == "http://127.0.0.1:5000/#/experiments/3/runs/r1"
    assert LINKS.model_version("acme.churn", "4") == "http://127.0.0.1:5000/#/models/acme.churn/versions/4"
    assert LINKS.mlflow_run(None, "r1") == "http://127.0.0.1:5000/#/runs/r1"  # the UI opens the run's page
    assert Links().flow_run("abc") is None and Links().mlflow_run("3", "r1") is None


def test_the_run_description_names_the_request_its_attempts_and_links_each_prefect_run() -> None:
    text = run_description(_request(), LINKS, registered=("acme.churn", "4"))
    assert "**acme/churn**" in text and "`req-1`" in text
    assert "Attempts: 2 (1 on small (crashed); 2 on large (running))" in text
    assert "[attempt 1](http://127.0.0.1:4200/runs/flow-run/run-1)" in text
    assert "[attempt 2](http://127.0.0.1:4200/runs/flow-run/run-2)" in text
    assert "tag `request:req-1`" in text and "`data.csv`" in text and "/home/x" not in text  # no host path
    assert "[acme.churn version 4](http://127.0.0.1:5000/#/models/acme.churn/versions/4)" in text


def test_without_a_web_ui_the_description_has_plain_names() -> None:
    text = run_description(_request(), Links())
    assert "attempt 1, attempt 2" in text and "](" not in text


def test_the_progress_says_step_attempt_eta_and_the_latest_validation_metrics() -> None:
    progress = Progress(40, 160, 2, "large", resume_step=30, eta_s=125.0,
                        metrics={"train_accuracy": 0.9, "validation_accuracy": 0.8512, "validation_loss": 0.41})
    text = progress_text(_request(), progress, LINKS, experiment_id="7")
    assert "step 40 of 160 (25%), attempt 2 on large, resumed at step 30" in text
    assert "ETA: 2.1 min" in text
    assert "validation_accuracy 0.8512, validation_loss 0.41" in text and "train_accuracy" not in text
    assert "[MLflow run](http://127.0.0.1:5000/#/experiments/7/runs/mlrun)" in text
    done = progress_text(_request(), Progress(160, 160, 2, "large", registered=("acme.churn", "4")), LINKS, "7")
    assert "ETA: done" in done and "metrics: none yet" in done
    assert "[acme.churn version 4](http://127.0.0.1:5000/#/models/acme.churn/versions/4)" in done


def test_the_attempts_table_links_the_mlflow_run_and_once_registered_the_version() -> None:
    request = _request()
    assert mlflow_links(request, LINKS) == "[MLflow run](http://127.0.0.1:5000/#/runs/mlrun)"
    request.model_version = "4"
    assert mlflow_links(request, LINKS).endswith(
        " · [registered version 4](http://127.0.0.1:5000/#/models/acme.churn/versions/4)")
    assert mlflow_links(request, Links()) == ""
