"""The tenant API's error map: every error type has a status and a stable code, and the statuses are
the inference service's except where the tenant API refines them (409, the dataset 404, the 401)."""

from __future__ import annotations

import pytest

import tenantml.errors as errors
from tenantml.inference.statuses import http_status
from tenantml.tenant_api.errors import CODES, REFINED, error_answer


def _error_types() -> list[type[errors.TenantmlError]]:
    return [getattr(errors, name) for name in errors.__all__
            if isinstance(getattr(errors, name), type) and issubclass(getattr(errors, name), errors.TenantmlError)]


def _instance(kind: type[errors.TenantmlError]) -> errors.TenantmlError:
    for args in ((), ("x",), ("x", "y"), ("x", 1, 2), ("x", "y", "z")):
        try:
            return kind(*args)  # type: ignore[call-arg]
        except TypeError:
            continue
    raise AssertionError(f"cannot build {kind.__name__}")


@pytest.mark.parametrize("kind", _error_types(), ids=lambda kind: kind.__name__)
def test_every_error_has_a_status_and_a_code_and_only_refined_ones_differ_from_inference(
        kind: type[errors.TenantmlError]) -> None:
    error = _instance(kind)
    status, body = error_answer(error)
    if kind in (errors.TenantmlError, errors.StaleEpoch, errors.CorruptCheckpoint, errors.ResourceExhausted,
                errors.InvalidSetting):
        assert (status, body["code"]) == (500, "internal")  # the platform's own, never a tenant's answer
        assert body["message"] == "the tenant API failed on this request: the operator's logs say why"
        return
    assert body["code"] and body["code"] != "internal" and body["message"] == str(error)
    if not isinstance(error, REFINED):
        assert status == http_status(error), kind.__name__


def test_codes_are_stable_and_most_specific_first() -> None:
    codes = {kind: code for kind, _, code in CODES}
    assert codes[errors.AlreadyEnded] == "already_ended" and codes[errors.DatasetInUse] == "dataset_in_use"
    for index, (kind, _, _) in enumerate(CODES):
        for later, _, _ in CODES[index + 1:]:
            assert not issubclass(later, kind), f"{later.__name__} is shadowed by {kind.__name__}"


def test_server_paths_are_cut_out_of_messages() -> None:
    error = errors.DatasetOutsideTenant("../b/x.csv", "/srv/home/datasets/a")
    _, body = error_answer(error, {" '/srv/home/datasets/a'": ""})
    assert body == {"code": "dataset_outside_tenant",
                    "message": "dataset '../b/x.csv' is outside the tenant's storage: use a path inside it"}


def test_an_invalid_field_is_named() -> None:
    assert error_answer(errors.InvalidPayload("params.epochs", "must be an integer")) == (
        422, {"code": "invalid_payload", "message": "params.epochs: must be an integer", "field": "params.epochs"})
