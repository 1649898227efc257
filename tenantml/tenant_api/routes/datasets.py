"""``/v1/datasets``: upload (streamed into the tenant's storage, size-limited), list, delete.

An upload is ``PUT /v1/datasets/<name>`` with the file's bytes as the body: ``<name>`` is a file
name, never a path, and the platform writes the bytes to a partial file it names itself, then
renames it onto ``<name>`` once complete and readable as a table.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from tenantml.errors import PayloadTooLarge
from tenantml.services import datasets
from tenantml.tenant_api.app import Tenant, backend

__all__ = ["router"]

router = APIRouter(tags=["datasets"])

WRITE_BYTES = 1024 * 1024
"""Bytes gathered before one write to disk (on the thread pool, off the event loop)."""


@router.put(
    "/datasets/{name:path}", status_code=201, summary="Upload a CSV or Parquet file as dataset <name>",
    openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}}},
)
async def upload(name: str, request: Request, tenant: Tenant) -> dict[str, Any]:
    state = backend(request)
    limit = state.limits.max_dataset_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit, "dataset")
    upload = await run_in_threadpool(datasets.start_upload, state.store, state.storage, tenant, name, limit)
    try:
        pending = bytearray()
        async for chunk in request.stream():
            pending += chunk
            if len(pending) >= WRITE_BYTES:
                await run_in_threadpool(upload.write, bytes(pending))
                pending.clear()
        await run_in_threadpool(upload.write, bytes(pending))
        return await run_in_threadpool(datasets.finish_upload, state.storage, tenant, upload,
                                       state.limits.max_header_bytes)
    except BaseException:
        upload.discard()
        raise


@router.get("/datasets", summary="The tenant's datasets")
def list_datasets(request: Request, tenant: Tenant) -> dict[str, Any]:
    return {"datasets": datasets.list_datasets(backend(request).storage, tenant)}


@router.delete("/datasets/{name:path}", status_code=204, summary="Delete a dataset no waiting or running training reads")
def delete(name: str, request: Request, tenant: Tenant) -> None:
    state = backend(request)
    datasets.delete_dataset(state.store, state.storage, tenant, name)
