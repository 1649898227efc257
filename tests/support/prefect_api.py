"""The Prefect API of a running `tenantml up`, as a person with its credentials file reaches it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from tenantml.local.credentials import read_credentials
from tests.support.platform import Up

__all__ = ["auth_string", "prefect_client", "request_runs"]


def auth_string(up: Up) -> str:
    credentials = read_credentials(up.home)
    assert credentials is not None, f"tenantml up wrote no credentials file in {up.home}"
    return credentials.prefect_auth_string.get_secret_value()


@contextmanager
def prefect_client(up: Up) -> Iterator[SyncPrefectClient]:
    """A client of the platform's Prefect server, logged in with the auth string from its credentials file."""
    updates = {PREFECT_API_URL: up.status["prefect_api_url"], PREFECT_API_AUTH_STRING: auth_string(up)}
    with temporary_settings(updates=updates), get_client(sync_client=True) as client:
        yield client


def request_runs(client: SyncPrefectClient, request_id: str) -> list[FlowRun]:
    """The flow runs tagged ``request:<id>``: the UI's runs list filtered by that tag."""
    return client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"request:{request_id}"])))
