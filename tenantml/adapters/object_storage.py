"""Bytes under keys: a folder on disk, or an S3 (or S3-compatible) bucket and prefix.

One small port, :class:`ObjectStore`, and two implementations. Datasets
(:mod:`tenantml.adapters.s3_datasets`) and checkpoints (:class:`ObjectCheckpoints`) are written
through it; all the code that talks to S3 is here. Keys are relative to the store's root and
always start with the tenant (:func:`tenant_key`), so a tenant's objects are ``<prefix>/<tenant>/...``
in S3 as ``<root>/<tenant>/...`` on disk.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from tenantml.domain.request import Checkpoint
from tenantml.errors import CorruptCheckpoint, ServiceUnavailable

__all__ = [
    "LocalObjects",
    "MissingObject",
    "ObjectCheckpoints",
    "ObjectStore",
    "S3Objects",
    "StoredObject",
    "checkpoint_prefix",
    "tenant_key",
]


class MissingObject(LookupError):
    """No object under that key (callers turn it into the error their user can act on)."""


@dataclass(frozen=True)
class StoredObject:
    key: str  # relative to the store's root
    size: int
    modified_at: datetime


class ObjectStore(Protocol):
    """Objects under keys relative to one root; ``url`` is where people (and MLflow) find one."""

    def url(self, key: str) -> str: ...
    def key_of(self, url: str) -> str | None: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def put_file(self, key: str, path: Path) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def get_file(self, key: str, path: Path) -> None: ...
    def list(self, prefix: str) -> list[StoredObject]: ...
    def delete(self, key: str) -> None: ...


def tenant_key(tenant: str, area: str, relative: str) -> str:
    """``<tenant>/<area>/<relative>``; None of ``relative``'s parts may leave the area (``..``, absolute)."""
    parts = relative.split("/")
    if relative.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"key {relative!r} is not a plain relative key inside {tenant}/{area}/")
    return f"{tenant}/{area}/{relative}"


class LocalObjects:
    """Objects as files under ``root``; a key is a relative path."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"key {key!r} is outside {self.root}")
        return path

    def url(self, key: str) -> str:
        return self._path(key).as_uri()

    def key_of(self, url: str) -> str | None:
        prefix = self.root.as_uri() + "/"
        return url[len(prefix):] if url.startswith(prefix) else None

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)

    def put_file(self, key: str, path: Path) -> None:
        self.put_bytes(key, path.read_bytes())

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise MissingObject(key) from None

    def get_file(self, key: str, path: Path) -> None:
        path.write_bytes(self.get_bytes(key))

    def list(self, prefix: str) -> list[StoredObject]:
        folder = self.root / prefix
        found = []
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.is_file() and not path.is_symlink() and not path.name.endswith(".partial"):
                info = path.stat()
                found.append(StoredObject(path.relative_to(self.root).as_posix(), info.st_size,
                                          datetime.fromtimestamp(info.st_mtime, UTC)))
        return found

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3Objects:
    """Objects in ``bucket`` under ``prefix``, through a boto3 S3 client (built by prefect-aws's blocks)."""

    def __init__(self, client: Any, bucket: str, prefix: str, endpoint: str | None = None) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")
        self.endpoint = endpoint or "AWS"

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def key_of(self, url: str) -> str | None:
        root = self.url("")
        if not url.startswith(root):
            return None
        key = url[len(root):]
        return key if key and posixpath.normpath(key) == key else None

    def _call(self, doing: str, key: str, call: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call(Bucket=self.bucket, **kwargs)
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise MissingObject(key) from None
            raise ServiceUnavailable(
                f"S3 refused {doing} s3://{self.bucket}/{self._full(key)} ({code or err}): check "
                "TENANTML_STORAGE__BUCKET and the credentials (TENANTML_STORAGE__ACCESS_KEY_ID, "
                "TENANTML_STORAGE__SECRET_ACCESS_KEY)"
            ) from err
        except BotoCoreError as err:
            raise ServiceUnavailable(
                f"S3 at {self.endpoint} did not answer {doing} s3://{self.bucket}/{self._full(key)} ({err}): "
                "check TENANTML_STORAGE__ENDPOINT_URL"
            ) from err

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call("writing", key, self.client.put_object, Key=self._full(key), Body=data)

    def put_file(self, key: str, path: Path) -> None:
        with path.open("rb") as body:
            self._call("writing", key, self.client.put_object, Key=self._full(key), Body=body)

    def get_bytes(self, key: str) -> bytes:
        answer = self._call("reading", key, self.client.get_object, Key=self._full(key))
        return bytes(answer["Body"].read())

    def get_file(self, key: str, path: Path) -> None:
        path.write_bytes(self.get_bytes(key))

    def list(self, prefix: str) -> list[StoredObject]:
        found, token = [], None
        start = self._full(prefix)
        while True:
            extra: dict[str, str] = {"ContinuationToken": token} if token else {}
            page = self._call("listing", prefix, self.client.list_objects_v2, Prefix=start, **extra)
            for item in page.get("Contents", []):
                key = str(item["Key"])[len(self.prefix) + 1 if self.prefix else 0:]
                found.append(StoredObject(key, int(item["Size"]), item["LastModified"]))
            token = page.get("NextContinuationToken")
            if not token:
                return sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        self._call("deleting", key, self.client.delete_object, Key=self._full(key))


def checkpoint_prefix(tenant: str, request_id: str) -> str:
    return tenant_key(tenant, "checkpoints", request_id) + "/"


class ObjectCheckpoints:
    """Checkpoint bytes at ``<tenant>/checkpoints/<request>/lease-<epoch>/step-<n>.pkl``.

    The key holds the lease epoch, so a fenced worker's late write lands beside the current lease's,
    never on it; which one counts is the metadata store's pointer (a fenced write), not this store.
    """

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def owns(self, checkpoint: Checkpoint) -> bool:
        return self.objects.key_of(checkpoint.uri) is not None

    def upload(self, tenant: str, request_id: str, blob: bytes, epoch: int, step: int) -> Checkpoint:
        key = f"{checkpoint_prefix(tenant, request_id)}lease-{epoch}/step-{step:08d}.pkl"
        self.objects.put_bytes(key, blob)
        return Checkpoint(uri=self.objects.url(key), step=step, sha256=hashlib.sha256(blob).hexdigest())

    def download(self, checkpoint: Checkpoint) -> bytes:
        key = self.objects.key_of(checkpoint.uri)
        if key is None:
            raise CorruptCheckpoint(checkpoint.uri, "(outside the platform's storage)", checkpoint.sha256)
        try:
            blob = self.objects.get_bytes(key)
        except MissingObject:
            raise CorruptCheckpoint(checkpoint.uri, "(no such object)", checkpoint.sha256) from None
        digest = hashlib.sha256(blob).hexdigest()
        if digest != checkpoint.sha256:
            raise CorruptCheckpoint(checkpoint.uri, digest, checkpoint.sha256)
        return blob

    def prune(self, tenant: str, request_id: str, keep: Checkpoint | None, retention: int) -> int:
        """Delete the request's checkpoints but the newest ``retention`` (and ``keep``, the pointer's)."""
        files = [o.key for o in self.objects.list(checkpoint_prefix(tenant, request_id))
                 if posixpath.basename(o.key).startswith("step-")]
        files.sort(key=lambda key: key.rsplit("step-", 1)[-1], reverse=True)
        kept = set(files[:retention])
        if keep is not None and retention > 0:
            kept.add(self.objects.key_of(keep.uri) or "")
        removed = 0
        for key in files:
            if key not in kept:
                self.objects.delete(key)
                removed += 1
        return removed
