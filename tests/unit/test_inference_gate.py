"""The ASGI gate in front of /predict, driven with plain ASGI messages and a fake key table."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tenantml.domain.tenant import hash_api_key
from tenantml.errors import InvalidRequest, NotFound, PlatformError, TenantmlError
from tenantml.errors import InvalidPayload, MalformedBody, ModelNotFound, ModelUnavailable, PayloadTooLarge, Unauthorized
from tenantml.inference.statuses import http_status
from tenantml.inference.gate import TENANT_STATE, GateConfig, TenantGate, check_envelope
from tenantml.inference.keys import TenantKeys, bearer_token

KEY = "tml_secret-key"
LIMIT = 200


class Inner:
    """The wrapped app: records what reached it and answers 200."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append((scope, body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def make_gate(lookups: list[str] | None = None) -> tuple[TenantGate, Inner]:
    table = {hash_api_key(KEY): "acme"}

    def lookup(digest: str) -> str | None:
        if lookups is not None:
            lookups.append(digest)
        return table.get(digest)

    inner = Inner()
    gate = TenantGate(inner, setup=lambda: GateConfig(TenantKeys(lookup), LIMIT))
    return gate, inner


def call(gate: TenantGate, body: bytes, headers: dict[str, str] | None = None, path: str = "/predict",
         method: str = "POST", chunks: int = 1) -> tuple[int, dict[str, Any] | bytes, dict[bytes, bytes]]:
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": method, "path": path, "headers": raw_headers, "state": {}}
    size = max(1, len(body) // chunks) if body else 1
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(gate(scope, receive, send))
    start = sent[0]
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    try:
        decoded: dict[str, Any] | bytes = json.loads(payload)
    except ValueError:
        decoded = payload
    return start["status"], decoded, dict(start["headers"])


AUTH = {"Authorization": f"Bearer {KEY}"}
GOOD = json.dumps({"model": "churn", "rows": [{"x": 1}]}).encode()


def test_a_known_key_passes_with_its_tenant_in_the_scope_state() -> None:
    gate, inner = make_gate()
    status, _, _ = call(gate, GOOD, {**AUTH, "Content-Type": "text/plain"})
    assert status == 200
    scope, body = inner.calls[0]
    assert scope["state"][TENANT_STATE] == "acme"
    assert body == GOOD
    headers = dict(scope["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == str(len(GOOD)).encode()


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": f"Basic {KEY}"}, {"Authorization": "Bearer wrong-key"},
     {"Authorization": f"Bearer {KEY} extra"}],
)
def test_a_missing_or_unknown_key_is_401_and_the_body_is_not_read(headers: dict[str, str]) -> None:
    gate, inner = make_gate()
    status, body, response_headers = call(gate, b"not even json", headers)
    assert status == 401
    assert "API key" in body["error"]  # type: ignore[index]
    assert response_headers[b"www-authenticate"] == b"Bearer"
    assert inner.calls == []


def test_a_known_key_is_looked_up_once_then_remembered() -> None:
    lookups: list[str] = []
    gate, _ = make_gate(lookups)
    for _ in range(5):
        call(gate, GOOD, AUTH)
    assert lookups == [hash_api_key(KEY)]  # only the digest ever reaches the database


def test_an_unknown_key_is_asked_every_time() -> None:
    lookups: list[str] = []
    gate, _ = make_gate(lookups)
    for _ in range(3):
        call(gate, GOOD, {"Authorization": "Bearer nope"})
    assert len(lookups) == 3


def test_a_body_over_the_limit_is_413_by_content_length_or_while_reading() -> None:
    gate, inner = make_gate()
    big = json.dumps({"model": "churn", "rows": [{"x": "y" * LIMIT}]}).encode()
    status, body, _ = call(gate, big, {**AUTH, "Content-Length": str(len(big))})
    assert status == 413 and f"{LIMIT} bytes" in body["error"]  # type: ignore[index]
    status, _, _ = call(gate, big, AUTH, chunks=4)  # chunked: no Content-Length
    assert status == 413
    assert inner.calls == []


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"", b"[1, 2"])
def test_a_body_that_is_not_json_is_400_without_echoing_it(body: bytes) -> None:
    gate, inner = make_gate()
    status, answer, _ = call(gate, body, AUTH)
    assert status == 400
    assert "not valid JSON" in answer["error"]  # type: ignore[index]
    assert inner.calls == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([1, 2], "body"),
        ({"rows": []}, "model"),
        ({"model": 3, "rows": []}, "model"),
        ({"model": "churn"}, "rows"),
        ({"model": "churn", "rows": {"x": 1}}, "rows"),
        ({"model": "churn", "rows": [], "tenant": "other"}, "tenant"),
        ({"model": "churn", "rows": [], "extra": 1}, "extra"),
    ],
)
def test_a_wrong_envelope_is_422_naming_the_field(payload: object, field: str) -> None:
    gate, inner = make_gate()
    status, answer, _ = call(gate, json.dumps(payload).encode(), AUTH)
    assert status == 422
    assert answer["field"] == field  # type: ignore[index]
    assert inner.calls == []


def test_the_tenant_in_a_body_is_refused_with_the_reason() -> None:
    with pytest.raises(InvalidPayload, match="the tenant comes from the API key"):
        check_envelope({"model": "m", "rows": [], "tenant": "beta"})


def test_other_paths_and_methods_pass_untouched() -> None:
    gate, inner = make_gate()
    assert call(gate, b"", path="/readyz", method="GET")[0] == 200
    assert call(gate, b"", path="/predict", method="GET")[0] == 200
    assert call(gate, b"x", path="/other")[0] == 200
    assert len(inner.calls) == 3


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc  ") == "abc"
    assert bearer_token(None) is None
    assert bearer_token("Token abc") is None
    assert bearer_token("Bearer a b") is None


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (Unauthorized(), 401),
        (MalformedBody("x"), 400),
        (PayloadTooLarge(10), 413),
        (InvalidPayload("rows", "is empty"), 422),
        (InvalidRequest("x"), 422),
        (ModelNotFound("m"), 404),
        (NotFound("x"), 404),
        (ModelUnavailable("x"), 503),
        (PlatformError("x"), 503),
        (TenantmlError("x"), 500),
        (RuntimeError("x"), 500),
    ],
)
def test_every_error_maps_to_its_http_status(error: BaseException, status: int) -> None:
    assert http_status(error) == status


def test_a_remembered_key_is_asked_again_after_its_ttl() -> None:
    now = [0.0]
    lookups: list[str] = []

    def lookup(digest: str) -> str | None:
        lookups.append(digest)
        return "acme"

    keys = TenantKeys(lookup, ttl_s=30, clock=lambda: now[0])
    assert keys.tenant_for(KEY) == "acme"
    now[0] = 29
    assert keys.cached(KEY) == "acme"
    now[0] = 31
    assert keys.cached(KEY) is None
    assert keys.tenant_for(KEY) == "acme"
    assert len(lookups) == 2


def roomy_gate() -> tuple[TenantGate, Inner]:
    """A gate whose body limit is far above the nesting tests' bodies."""
    inner = Inner()
    keys = TenantKeys(lambda digest: "acme" if digest == hash_api_key(KEY) else None)
    return TenantGate(inner, setup=lambda: GateConfig(keys, 1_000_000)), inner


@pytest.mark.parametrize("depth", [9, 1_000])
def test_a_body_nested_too_deep_is_422_in_the_services_own_shape(depth: int) -> None:
    gate, inner = roomy_gate()
    body = b'{"model": "churn", "rows": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    status, answer, _ = call(gate, body, AUTH)
    assert status == 422
    assert answer == {"error": "rows: is nested more than 8 levels deep: send each row as a flat object of feature "
                               "values", "field": "rows"}
    assert inner.calls == []


def test_a_body_nested_deeper_than_the_parser_allows_is_400() -> None:
    gate, inner = roomy_gate()
    status, answer, _ = call(gate, b'{"model": "churn", "rows": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", AUTH)
    assert status == 400 and "not valid JSON" in answer["error"]  # type: ignore[index]
    assert inner.calls == []


def test_rows_of_scalars_and_a_list_value_pass_the_depth_check() -> None:
    check_envelope({"model": "m", "rows": [{"x": 1, "y": [1, 2]}, {"x": {"a": [1]}}]})
