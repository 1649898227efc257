"""The tenant API's entrypoint: ``python -m tenantml.tenant_api.serve --port N`` (``tenantml up`` runs it).

Settings come from ``TENANTML_*`` variables, read here and nowhere else; the adapters are built
from them by :class:`tenantml.bootstrap.Connection`. It binds 127.0.0.1 unless told otherwise, and
runs one uvicorn worker: the routes block on the metadata store on FastAPI's thread pool, and a
second process would only add a second key cache.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["build_app", "main"]

HOST = "127.0.0.1"


def build_app() -> FastAPI:
    """The app over the settings' database, storage and MLflow; FastAPI is imported here, not at import."""
    from sqlalchemy import text

    from tenantml.bootstrap import Connection
    from tenantml.inference.keys import TenantKeys
    from tenantml.services.admission import SubmissionLimits
    from tenantml.settings import load_settings
    from tenantml.tenant_api.app import Backend, create_app

    settings = load_settings()
    connection = Connection(settings, create_schema=False)
    store = connection.store

    def ready() -> bool:
        try:
            with store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return False
        return True

    backend = Backend(
        store=store, storage=connection.storage, registry=lambda: connection.registry,
        keys=TenantKeys(store.tenant_for_key), limits=SubmissionLimits.from_settings(settings),
        follow_interval_s=settings.tenant_api.follow_interval_s, ready=ready,
    )
    return create_app(backend)


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="tenantml-tenant-api", description=__doc__)
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(build_app(), host=args.host, port=args.port, log_level="info", access_log=False,
                timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
