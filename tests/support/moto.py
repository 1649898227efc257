"""moto's server mode for tests: a real AWS stand-in process on a free port, stopped by its pid.

prefect-aws tests its AWS code against moto; we run moto as a server rather than patching boto3 in
the test's process, so that the code under test talks HTTP to an endpoint URL exactly as it would
to ECS, and could as well be another process (a worker, the provisioner's loop).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect_aws import AwsCredentials

from tenantml.local.processes import claim_port, start_service
from tenantml.local.servers import HOST, Server

__all__ = ["MOTO_REGION", "moto_credentials", "running_moto"]

MOTO_REGION = "us-east-1"
READY_TIMEOUT_S = 60.0


@contextmanager
def running_moto(folder: Path) -> Iterator[Server]:
    """``moto_server`` on a free port, its log and working folder in ``folder``; stopped by pid on exit.

    Ready when its API answers; no ``AWS_*`` variable of ours reaches it.
    """
    port = claim_port("moto server", 0)
    command = [str(Path(sys.executable).parent / "moto_server"), "-H", HOST, "-p", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    url = f"http://{HOST}:{port}"
    server = Server(start_service("moto-server", command, env, folder, folder), url, f"{url}/moto-api/data.json")
    server.wait_ready(READY_TIMEOUT_S)
    try:
        yield server
    finally:
        server.stop()


def moto_credentials() -> AwsCredentials:
    """The credentials block moto accepts: any keys, in its region."""
    return AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=MOTO_REGION)
