"""The object-store adapter against moto's S3 server (and the same port on disk): tenant prefixes,
refusals, checkpoints with their sha256 and pruning, the prefect-aws blocks, and the start-up check.

moto runs as a real process on a free port, as prefect-aws tests its own S3 code; every test makes
its keys under a random tenant, so the tests share one bucket.
"""

from __future__ import annotations

import hashlib
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect_aws import S3Bucket
from prefect.settings import PREFECT_API_URL, temporary_settings

from tenantml.adapters.object_storage import LocalObjects, ObjectCheckpoints, ObjectStore, S3Objects
from tenantml.adapters.s3_datasets import ObjectTenantStorage
from tenantml.adapters.s3_setup import load_objects, register_blocks, storage_blocks, storage_problems
from tenantml.domain.request import Checkpoint
from tenantml.errors import CorruptCheckpoint, DatasetNotFound, DatasetOutsideTenant, TenantmlError
from tenantml.local.embedded import EmbeddedPlatform
from tenantml.local.processes import claim_port
from tenantml.local.servers import Server
from tenantml.settings import Settings, load_settings
from tests.support.moto import MOTO_REGION, running_moto
from tests.support.servers import RunningServer

pytestmark = pytest.mark.integration

BUCKET = "tenantml-test"
CSV = b"a,b,label\n1,2,0\n3,4,1\n"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_moto(tmp_path_factory.mktemp("moto")) as server:
        yield server


def s3_settings(moto_url: str, home: Path, **storage: object) -> Settings:
    values: dict[str, object] = {"backend": "s3", "bucket": BUCKET, "endpoint_url": moto_url, "region": MOTO_REGION,
                                 "access_key_id": "testing", "secret_access_key": "testing", "prefix": "platform"}
    return load_settings(home=home, storage={**values, **storage})


@pytest.fixture(scope="module")
def s3(moto: Server, tmp_path_factory: pytest.TempPathFactory) -> S3Objects:
    credentials, bucket = storage_blocks(s3_settings(moto.url, tmp_path_factory.mktemp("home")).storage)
    client = credentials.get_client("s3")
    client.create_bucket(Bucket=BUCKET)
    return S3Objects(client, bucket.bucket_name, bucket.bucket_folder, moto.url)


def keys(s3: S3Objects, prefix: str = "") -> list[str]:
    """Every key in the bucket under ``prefix``, as moto holds it (the bucket's own view, not the adapter's)."""
    answer = s3.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in answer.get("Contents", []))


@pytest.fixture(params=["s3", "disk"])
def objects(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "disk":
        return LocalObjects(tmp_path / "objects")
    found: ObjectStore = request.getfixturevalue("s3")
    return found


def test_checkpoints_round_trip_per_lease_and_refuse_changed_bytes(objects: ObjectStore, tenant_name: str) -> None:
    checkpoints = ObjectCheckpoints(objects)
    first = checkpoints.upload(tenant_name, "req-1", b"state at 10", epoch=1, step=10)
    late = checkpoints.upload(tenant_name, "req-1", b"fenced worker's", epoch=1, step=12)
    newer = checkpoints.upload(tenant_name, "req-1", b"state at 12", epoch=2, step=12)
    assert newer.uri != late.uri, "a fenced lease's write never lands on the newer lease's key"
    assert newer.uri.endswith(f"{tenant_name}/checkpoints/req-1/lease-2/step-00000012.pkl")
    assert checkpoints.download(first) == b"state at 10"
    assert checkpoints.download(newer) == b"state at 12"
    assert first.sha256 == hashlib.sha256(b"state at 10").hexdigest()
    key = objects.key_of(first.uri)
    assert key is not None
    objects.put_bytes(key, b"tampered")
    with pytest.raises(CorruptCheckpoint, match="sha256"):
        checkpoints.download(first)
    outside = Checkpoint(uri="s3://elsewhere/x/step-00000001.pkl", step=1, sha256=first.sha256)
    assert not checkpoints.owns(outside)
    with pytest.raises(CorruptCheckpoint):
        checkpoints.download(outside)


def test_pruning_keeps_the_newest_and_the_pointer(objects: ObjectStore, tenant_name: str) -> None:
    checkpoints = ObjectCheckpoints(objects)
    made = [checkpoints.upload(tenant_name, "req-2", f"s{step}".encode(), epoch=1 + step // 3, step=step)
            for step in range(1, 7)]
    other = checkpoints.upload(tenant_name, "req-3", b"another request's", epoch=1, step=1)
    removed = checkpoints.prune(tenant_name, "req-2", keep=made[1], retention=2)
    left = sorted(o.key for o in objects.list(f"{tenant_name}/checkpoints/req-2/"))
    assert removed == 3
    assert left == sorted(objects.key_of(c.uri) or "" for c in (made[1], made[4], made[5]))
    assert checkpoints.download(other) == b"another request's", "pruning one request leaves the others"


@pytest.fixture
def datasets(s3: S3Objects, tmp_path: Path) -> ObjectTenantStorage:
    return ObjectTenantStorage(tmp_path / "copies", s3)


def test_datasets_live_under_the_tenants_prefix_in_s3(datasets: ObjectTenantStorage, s3: S3Objects,
                                                      tmp_path: Path, tenant_name: str) -> None:
    source = tmp_path / "churn.csv"
    source.write_bytes(CSV)
    datasets.add(tenant_name, source)
    upload = datasets.open_upload(tenant_name, "second.csv", limit=1_000)
    upload.write(CSV)
    upload.commit()
    assert keys(s3, f"platform/{tenant_name}/") == [f"platform/{tenant_name}/datasets/churn.csv",
                                                     f"platform/{tenant_name}/datasets/second.csv"]
    assert [d.name for d in datasets.datasets(tenant_name)] == ["churn.csv", "second.csv"]
    assert datasets.datasets(tenant_name + "-other") == []
    s3.client.put_object(Bucket=BUCKET, Key=f"platform/{tenant_name}/datasets/churn.csv", Body=CSV + b"5,6,0\n")
    copy = datasets.resolve(tenant_name, "churn.csv")
    assert copy.read_bytes() == CSV + b"5,6,0\n", "resolve reads the store, not a stale local copy"
    by_url = datasets.resolve(tenant_name, f"s3://{BUCKET}/platform/{tenant_name}/datasets/second.csv")
    assert by_url.read_bytes() == CSV
    datasets.delete(tenant_name, "churn.csv")
    assert keys(s3, f"platform/{tenant_name}/") == [f"platform/{tenant_name}/datasets/second.csv"]
    with pytest.raises(DatasetNotFound):
        datasets.resolve(tenant_name, "churn.csv")


def test_a_tenant_cannot_name_another_tenants_objects(datasets: ObjectTenantStorage, tmp_path: Path,
                                                      tenant_name: str) -> None:
    other = tenant_name + "-b"
    source = tmp_path / "secret.csv"
    source.write_bytes(CSV)
    datasets.add(other, source)
    for named in (f"../{other}/secret.csv", f"../../{other}/datasets/secret.csv", "..", "/etc/passwd",
                  str(datasets.prefix(other) / "secret.csv"), f"file://{datasets.prefix(other)}/secret.csv",
                  f"s3://{BUCKET}/platform/{other}/datasets/secret.csv",
                  f"s3://other-bucket/platform/{tenant_name}/datasets/secret.csv",
                  f"s3://{BUCKET}/platform/{tenant_name}/checkpoints/x.pkl",
                  "https://example.com/secret.csv"):
        with pytest.raises(DatasetOutsideTenant):
            datasets.resolve(tenant_name, named)
        with pytest.raises(DatasetOutsideTenant):
            datasets.delete(tenant_name, named)
    with pytest.raises(DatasetOutsideTenant):
        datasets.add(tenant_name, datasets.prefix(other) / "secret.csv")
    assert [d.name for d in datasets.datasets(other)] == ["secret.csv"], "refusals delete nothing"


def test_up_registers_blocks_that_processes_load_by_name(moto: Server, s3: S3Objects,
                                                         prefect_server: RunningServer, tmp_path: Path) -> None:
    name = f"storage-{uuid.uuid4().hex[:8]}"
    settings = s3_settings(moto.url, tmp_path, bucket_block=name, credentials_block=f"{name}-aws")
    register_blocks(settings, prefect_server.url)
    with temporary_settings({PREFECT_API_URL: prefect_server.url}):
        block: Any = S3Bucket.load(name)
    assert (block.bucket_name, block.bucket_folder) == (BUCKET, "platform")
    assert block.credentials.aws_client_parameters.endpoint_url == moto.url
    assert "testing" not in repr(block.credentials.aws_secret_access_key)
    loaded = load_objects(settings.model_copy(update={"prefect": settings.prefect.model_copy(
        update={"api_url": prefect_server.url})}))
    loaded.put_bytes("probe/loaded.txt", b"through the block")
    assert keys(s3, "platform/probe/") == ["platform/probe/loaded.txt"]


def test_start_up_check_names_the_setting(moto: Server, s3: S3Objects, tmp_path: Path) -> None:
    assert list(storage_problems(s3_settings(moto.url, tmp_path))) == []
    assert list(storage_problems(load_settings(home=tmp_path))) == [], "the local backend needs no bucket"
    cases: dict[str, dict[str, object]] = {
        "TENANTML_STORAGE__BUCKET is not set": {"bucket": None},
        "does not exist": {"bucket": "no-such-bucket"},
        "TENANTML_STORAGE__SECRET_ACCESS_KEY, or neither": {"secret_access_key": None},
        "TENANTML_STORAGE__ENDPOINT_URL": {"endpoint_url": f"http://127.0.0.1:{claim_port('nothing', 0)}"},
    }
    for expected, change in cases.items():
        problems = list(storage_problems(s3_settings(moto.url, tmp_path, **change)))
        assert len(problems) == 1 and expected in problems[0], (change, problems)
    assert "TENANTML_STORAGE__BUCKET" in list(storage_problems(s3_settings(moto.url, tmp_path,
                                                                          bucket="no-such-bucket")))[0]


def test_start_up_check_names_the_keys_a_store_refuses(tmp_path: Path) -> None:
    (tmp_path / "moto").mkdir()
    with running_moto(tmp_path / "moto") as own:  # its own: moto checks keys for every caller from now on
        credentials, _ = storage_blocks(s3_settings(own.url, tmp_path).storage)
        credentials.get_client("s3").create_bucket(Bucket=BUCKET)
        urllib.request.urlopen(urllib.request.Request(f"{own.url}/moto-api/reset-auth", data=b"0", method="POST",
                                                      headers={"Content-Type": "text/plain"}),
                               timeout=10).close()
        problems = list(storage_problems(s3_settings(own.url, tmp_path)))
    assert len(problems) == 1 and "refused the credentials" in problems[0], problems
    assert "TENANTML_STORAGE__ACCESS_KEY_ID" in problems[0] and "testing" not in problems[0], "no key in the message"


def test_up_with_a_missing_bucket_starts_nothing(moto: Server, tmp_path: Path) -> None:
    embedded = EmbeddedPlatform(s3_settings(moto.url, tmp_path / "home", bucket="no-such-bucket"))
    with pytest.raises(TenantmlError, match="TENANTML_STORAGE__BUCKET"):
        embedded.start(serve_inference=False)
    assert embedded.services == [], "nothing is half-started"
