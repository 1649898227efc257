"""S3 storage from the settings: the prefect-aws blocks `tenantml up` registers, the client processes
load by block name, the start-up check, and the MLflow server's artifact destination.

``TENANTML_STORAGE__*`` fill an ``AwsCredentials`` block (keys, region, endpoint for S3-compatible
stores) and an ``S3Bucket`` block (bucket, ``prefix`` as its folder) that refers to it. Every other
process loads the bucket block by its name (``TENANTML_STORAGE__BUCKET_BLOCK``), so an operator can
repoint the platform's storage in the Prefect UI. The blocks only build the boto3 client; what is
written where is :mod:`tenantml.adapters.object_storage`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenantml.adapters.object_storage import S3Objects
from tenantml.errors import InvalidSetting
from tenantml.settings import Settings, StorageSettings

if TYPE_CHECKING:
    from prefect_aws import AwsCredentials, S3Bucket

__all__ = ["load_objects", "mlflow_artifacts", "register_blocks", "storage_blocks", "storage_problems"]

CHECK_TIMEOUT_S = 10


@contextmanager
def _prefect(api_url: str | None) -> Iterator[None]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if not api_url:
        yield
        return
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        yield


def storage_blocks(storage: StorageSettings) -> tuple[AwsCredentials, S3Bucket]:
    """The two blocks these settings describe (not saved)."""
    from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket

    if not storage.bucket:
        raise InvalidSetting("TENANTML_STORAGE__BACKEND is s3 but TENANTML_STORAGE__BUCKET is not set: name the bucket")
    credentials = AwsCredentials(
        aws_access_key_id=storage.access_key_id, aws_secret_access_key=storage.secret_access_key,
        region_name=storage.region, aws_client_parameters=AwsClientParameters(endpoint_url=storage.endpoint_url),
    )
    return credentials, S3Bucket(bucket_name=storage.bucket, credentials=credentials, bucket_folder=storage.prefix)


def register_blocks(settings: Settings, prefect_api: str) -> None:
    """Save the credentials and bucket blocks under their names (replacing earlier ones): `tenantml up`."""
    storage = settings.storage
    if storage.backend != "s3":
        return
    credentials, bucket = storage_blocks(storage)
    with _prefect(prefect_api):
        credentials.save(storage.credentials_block, overwrite=True)
        bucket.credentials = credentials  # saved: the bucket block now refers to it by name
        bucket.save(storage.bucket_block, overwrite=True)


def load_objects(settings: Settings) -> S3Objects:
    """The platform's S3 objects, from the bucket block named by ``TENANTML_STORAGE__BUCKET_BLOCK``."""
    from prefect_aws import S3Bucket

    name = settings.storage.bucket_block
    try:
        with _prefect(settings.prefect.api_url):
            bucket: Any = S3Bucket.load(name)  # sync here: no event loop in this thread
    except ValueError as err:
        raise InvalidSetting(
            f"no S3 Bucket block {name!r} in Prefect (TENANTML_STORAGE__BUCKET_BLOCK): start the platform with "
            "`tenantml up` and TENANTML_STORAGE__BACKEND=s3, or create the block in the Prefect UI"
        ) from err
    endpoint = bucket.credentials.aws_client_parameters.endpoint_url
    return S3Objects(bucket.credentials.get_client("s3"), bucket.bucket_name, bucket.bucket_folder, endpoint)


def storage_problems(settings: Settings, home: Path | None = None) -> Iterator[str]:
    """What stops the S3 storage from working, each naming its setting: a start-up check
    (tenantml.local.preflight) run before any process starts. Nothing for the local backend."""
    storage = settings.storage
    if storage.backend != "s3":
        return
    if not storage.bucket:
        yield "TENANTML_STORAGE__BACKEND is s3 but TENANTML_STORAGE__BUCKET is not set: name the bucket"
        return
    if bool(storage.access_key_id) != bool(storage.secret_access_key):
        yield ("set both TENANTML_STORAGE__ACCESS_KEY_ID and TENANTML_STORAGE__SECRET_ACCESS_KEY, or neither "
               "(boto3's own chain: environment, profile, role)")
        return
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    credentials, _ = storage_blocks(storage)
    config = Config(connect_timeout=CHECK_TIMEOUT_S, read_timeout=CHECK_TIMEOUT_S, retries={"max_attempts": 1})
    client: Any = credentials.get_boto3_session().client(
        "s3", config=config, **credentials.aws_client_parameters.get_params_override())
    where = storage.endpoint_url or "AWS"
    try:
        client.head_bucket(Bucket=storage.bucket)
        client.list_objects_v2(Bucket=storage.bucket, Prefix=f"{storage.prefix}/", MaxKeys=1)
    except NoCredentialsError:
        yield ("no AWS credentials for the S3 storage: set TENANTML_STORAGE__ACCESS_KEY_ID and "
               "TENANTML_STORAGE__SECRET_ACCESS_KEY")
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            yield (f"S3 bucket {storage.bucket!r} does not exist at {where}: create it, or set "
                   "TENANTML_STORAGE__BUCKET to one that does")
        else:
            yield (f"S3 at {where} refused the credentials for bucket {storage.bucket!r} ({code}): check "
                   "TENANTML_STORAGE__ACCESS_KEY_ID and TENANTML_STORAGE__SECRET_ACCESS_KEY (and the bucket's policy)")
    except (BotoCoreError, ValueError) as err:  # ValueError: an endpoint URL boto3 cannot parse
        yield f"S3 endpoint {where} cannot be reached ({err}): check TENANTML_STORAGE__ENDPOINT_URL"


def mlflow_artifacts(settings: Settings, store: Path) -> tuple[str, dict[str, str]]:
    """The MLflow server's ``--artifacts-destination`` and the variables its process needs for it.

    Clients upload through the server (``--serve-artifacts``), so only the server holds the keys.
    """
    storage = settings.storage
    if storage.backend != "s3":
        return str(store / "artifacts"), {}
    env = {"AWS_DEFAULT_REGION": storage.region}
    if storage.access_key_id and storage.secret_access_key:
        env.update({"AWS_ACCESS_KEY_ID": storage.access_key_id,
                    "AWS_SECRET_ACCESS_KEY": storage.secret_access_key.get_secret_value()})
    if storage.endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = storage.endpoint_url
    return f"s3://{storage.bucket}/{storage.prefix}/mlflow", env
