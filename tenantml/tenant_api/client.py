"""The tenant API over httpx, as the CLI uses it in tenant mode: answers as plain values, errors as
tenantml errors (by the answer's status and ``code``), so a command prints the same either way.

Only httpx is imported: the CLI in tenant mode starts without FastAPI, SQLAlchemy, Prefect or MLflow.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tenantml.errors import Conflict, InvalidRequest, NotFound, PlatformError, ServiceUnavailable, TenantmlError

__all__ = ["TenantApi"]

CHUNK_BYTES = 1024 * 1024
_TIMES = ("created_at", "finished_at", "finalized_at")


def _error(status: int, body: dict[str, Any]) -> TenantmlError:
    message = str(body.get("message") or body.get("error") or f"HTTP {status}")
    if status == 401:
        return InvalidRequest(f"the tenant API refused the key ({message}): check TENANTML_API_KEY")
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if 400 <= status < 500:
        return InvalidRequest(message)
    return ServiceUnavailable(f"the tenant API answered {status}: {message}")


def _with_times(view: dict[str, Any]) -> dict[str, Any]:
    for key in _TIMES:
        if isinstance(view.get(key), str):
            view[key] = datetime.fromisoformat(view[key])
    return view


class TenantApi:
    """One tenant's client: every call carries its key; the tenant is the key's."""

    def __init__(self, url: str, api_key: str, timeout_s: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {api_key}"},
                                    timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._client.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise PlatformError(f"the tenant API at {self.url} cannot be reached ({type(err).__name__}): "
                                "check TENANTML_API_URL, or is `tenantml up` running?") from err
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"message": response.text[:500]}
            raise _error(response.status_code, body if isinstance(body, dict) else {})
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        return None if response.status_code == 204 else response.json()

    # -- the calls, one per route ---------------------------------------------------------------
    def tenant(self) -> str:
        return str(self._json("GET", "/v1/tenant")["tenant"])

    def upload(self, file: Path, name: str | None = None) -> dict[str, Any]:
        def chunks() -> Iterator[bytes]:
            with file.open("rb") as handle:
                while chunk := handle.read(CHUNK_BYTES):
                    yield chunk

        if not file.is_file():
            raise InvalidRequest(f"{str(file)!r} is not a file: give a CSV or Parquet file to upload")
        found: dict[str, Any] = self._json("PUT", f"/v1/datasets/{name or file.name}", content=chunks(),
                                           headers={"Content-Type": "application/octet-stream"})
        return found

    def datasets(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/datasets")["datasets"])

    def delete_dataset(self, name: str) -> None:
        self._json("DELETE", f"/v1/datasets/{name}")

    def submit(self, **order: Any) -> dict[str, Any]:
        return dict(self._json("POST", "/v1/trainings", json=order))

    def trainings(self, limit: int = 50) -> list[dict[str, Any]]:
        return [_with_times(v) for v in self._json("GET", "/v1/trainings", params={"limit": limit})["trainings"]]

    def training(self, request_id: str) -> dict[str, Any]:
        return _with_times(self._json("GET", f"/v1/trainings/{request_id}"))

    def cancel(self, request_id: str) -> dict[str, Any]:
        return _with_times(self._json("POST", f"/v1/trainings/{request_id}/cancel"))

    def follow(self, request_id: str, on_progress: Callable[[dict[str, Any]], None],
               timeout_s: float = 3600.0) -> dict[str, Any]:
        """Read the request's server-sent events until its ``end``; returns the ended request."""
        try:
            with self._client.stream("GET", f"/v1/trainings/{request_id}/events", params={"timeout_s": timeout_s},
                                     timeout=httpx.Timeout(60.0, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response.status_code, response.json())
                kind = None
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        kind = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        data = json.loads(line.removeprefix("data: "))
                        if kind == "end":
                            return _with_times(data)
                        if kind == "timeout":
                            raise TenantmlError(f"request {request_id} did not finish within {timeout_s:.0f} s; "
                                                f"the training goes on: follow it with `tenantml run show {request_id}`")
                        on_progress(data)
        except httpx.HTTPError as err:
            raise PlatformError(f"following request {request_id} at {self.url} failed ({type(err).__name__}): "
                                f"follow it again with `tenantml run show {request_id}`") from err
        raise PlatformError(f"the tenant API closed the stream of request {request_id} before it ended")

    def models(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/models")["models"])

    def versions(self, model: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/models/{model}/versions"))

    def promote(self, model: str, version: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/models/{model}/promote", json={"version": version}))

    def rollback(self, model: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/models/{model}/rollback"))
