"""The ASGI middleware in front of ``POST /predict``: who is calling, and is the body usable at all.

In order, each answered with a JSON ``{"error": ...}`` before the service sees the request:

1. ``Authorization: Bearer <key>`` must name a tenant (401 otherwise). The tenant goes into the
   ASGI scope state as ``tenantml.tenant``; nothing in the body can change it.
2. The body must be at most ``max_body_bytes`` (413), checked on Content-Length and while reading.
3. The body must be JSON (400) and an object with a string ``model`` and a list ``rows`` and no
   other field (422 naming the field), nested at most ``MAX_DEPTH`` levels (422 naming ``rows``):
   a row is an object of scalars, and a body nested a thousand deep would otherwise reach
   BentoML's parser, which answers in its own shape and logs an error.

A body that passes is handed on unchanged, as ``application/json``, so the service's own parser
never meets input it would reject (and log). Plain ASGI, no framework import; messages never
contain input values.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from tenantml.errors import TenantmlError
from tenantml.errors import InvalidPayload, MalformedBody, PayloadTooLarge, Unauthorized
from tenantml.inference.statuses import http_status
from tenantml.inference.keys import TenantKeys, bearer_token

try:
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
    _DecodeError: type[Exception] = orjson.JSONDecodeError
except ImportError:  # pragma: no cover - orjson comes with bentoml
    _loads = json.loads
    _DecodeError = json.JSONDecodeError

__all__ = ["TENANT_STATE", "GateConfig", "TenantGate", "error_body"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TENANT_STATE = "tenantml.tenant"
_FIELDS = ("model", "rows")
MAX_DEPTH = 8
_CONTAINERS = (dict, list)  # what JSON parses into; exact types, as orjson and json build them
"""Deepest nesting of a body: the body, ``rows``, a row and a value are four; the rest is slack for the
schema to name a value that is a list or an object."""


@dataclass(frozen=True)
class GateConfig:
    keys: TenantKeys
    max_body_bytes: int


def error_body(error: BaseException) -> bytes:
    body: dict[str, Any] = {"error": str(error)}
    if isinstance(error, InvalidPayload):
        body["field"] = error.field
    return json.dumps(body).encode()


def check_envelope(payload: object) -> None:
    """The body's outer shape: ``{"model": str, "rows": list}`` and nothing else."""
    if not isinstance(payload, dict):
        raise InvalidPayload("body", 'must be a JSON object {"model": ..., "rows": [...]}')
    for name in payload:
        if name not in _FIELDS:
            why = "the tenant comes from the API key" if name == "tenant" else "send only 'model' and 'rows'"
            raise InvalidPayload(str(name)[:64], f"unexpected field: {why}")
    if "model" not in payload:
        raise InvalidPayload("model", "is required: name the model to use")
    if not isinstance(payload["model"], str):
        raise InvalidPayload("model", "must be a string")
    if "rows" not in payload:
        raise InvalidPayload("rows", "is required: a list of objects of feature values")
    if not isinstance(payload["rows"], list):
        raise InvalidPayload("rows", "must be a list of objects of feature values")
    _check_depth(payload["rows"])


def _check_depth(rows: list[Any]) -> None:
    """Walk only into lists and objects, without recursion; rows of scalars cost one type check per value."""
    pending: list[tuple[Any, int]] = []
    for row in rows:  # depth 3; the common case, kept to a plain loop
        if type(row) is dict:
            pending.extend((value, 4) for value in row.values() if type(value) in _CONTAINERS)
        elif type(row) is list:
            pending.append((row, 3))
    while pending:
        node, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise InvalidPayload("rows", f"is nested more than {MAX_DEPTH} levels deep: send each row as a flat "
                                         "object of feature values")
        for child in node.values() if type(node) is dict else node:
            if type(child) in _CONTAINERS:
                pending.append((child, depth + 1))


class TenantGate:
    def __init__(self, app: ASGIApp, *, setup: Callable[[], GateConfig], path: str = "/predict") -> None:
        """``setup()`` builds the configuration once, on the first request (never at import)."""
        self.app = app
        self.path = path
        self._setup = setup
        self._config: GateConfig | None = None

    @property
    def config(self) -> GateConfig:
        if self._config is None:
            self._config = self._setup()
        return self._config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            tenant = await self._tenant(scope)
            body = await self._body(scope, receive)
            try:
                payload = _loads(body)
            except _DecodeError as err:
                raise MalformedBody(_where(err)) from None
            except UnicodeDecodeError:
                raise MalformedBody("it is not UTF-8") from None
            check_envelope(payload)
        except TenantmlError as err:
            await _respond(send, http_status(err), error_body(err), unauthorized=isinstance(err, Unauthorized))
            return
        inner = dict(scope)
        inner["state"] = {**(scope.get("state") or {}), TENANT_STATE: tenant}
        inner["headers"] = [
            (name, value) for name, value in scope["headers"] if name not in (b"content-type", b"content-length")
        ] + [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await self.app(inner, _replay(body, receive), send)

    async def _tenant(self, scope: Scope) -> str:
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        token = bearer_token(authorization)
        if token is None:
            raise Unauthorized()
        keys = self.config.keys
        tenant = keys.cached(token)
        if tenant is None:
            tenant = await asyncio.to_thread(keys.tenant_for, token)
        if tenant is None:
            raise Unauthorized()
        return tenant

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.config.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise MalformedBody("its Content-Length is not a number") from None
                if declared > limit:
                    raise PayloadTooLarge(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise MalformedBody("the client went away before sending it all")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if not size:
            raise MalformedBody("the body is empty")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _where(err: Exception) -> str:
    line, column = getattr(err, "lineno", None), getattr(err, "colno", None)
    return f"error at line {line} column {column}" if line is not None else "it cannot be parsed"


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _respond(send: Send, status: int, body: bytes, unauthorized: bool = False) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if unauthorized:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
