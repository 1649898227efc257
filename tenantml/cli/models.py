"""`tenantml model ...` and `tenantml predict`: registered models and inference.

``model promote``, ``model rollback`` and ``model list`` act on the MLflow registry, as an operator
for any ``--tenant`` or, with ``TENANTML_API_KEY``, as that key's tenant. ``predict`` goes through
the inference service over HTTP like any client, so it needs a tenant's key (``--api-key`` or
``TENANTML_API_KEY``): the tenant is the key's, never a flag.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from tenantml.cli.output import JsonOption, format_metrics, print_json, print_table
from tenantml.cli.session import Session, TenantOption, session
from tenantml.domain.names import registered_model_name
from tenantml.errors import InvalidRequest, NotFound, PlatformError, TenantmlError
from tenantml.services import models, tenancy

__all__ = ["CHUNK_ROWS", "app", "post_rows", "read_rows"]

app = typer.Typer()
model_app = typer.Typer(help="A tenant's registered models: list them, promote a version, roll back.",
                        no_args_is_help=True)
app.add_typer(model_app, name="model")

CHUNK_ROWS = 500
"""Rows per request of `tenantml predict`, to stay under the service's body limit."""

ModelOption = Annotated[str, typer.Option("--model", help="The model's name.")]


@model_app.command("promote")
def promote(
    ctx: typer.Context,
    model: ModelOption,
    version: Annotated[str, typer.Option("--version", help="The version to serve, as `model list` shows it.")],
    tenant: TenantOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a version the champion, the one the inference service serves (within seconds)."""
    current = session(ctx)
    if current.tenant_api is not None:
        current.required_tenant(tenant)
        result = current.tenant_api.promote(model, version)
    else:
        result = models.promote(current.connection.registry, current.required_tenant(tenant), model, version)
    name = registered_model_name(result["tenant"], model)
    if as_json:
        print_json(result)
    elif result["previous_champion"] == version:
        print(f"{name}: version {version} is already the champion")
    else:
        print(f"{name}: champion {result['previous_champion'] or '(none)'} -> {version}")


@model_app.command("rollback")
def rollback(ctx: typer.Context, model: ModelOption, tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    """Give the champion back to the version that held it before the last promotion."""
    current = session(ctx)
    if current.tenant_api is not None:
        current.required_tenant(tenant)
        result = current.tenant_api.rollback(model)
    else:
        result = models.rollback(current.connection.registry, current.required_tenant(tenant), model)
    if as_json:
        print_json(result)
    else:
        print(f"{registered_model_name(result['tenant'], model)}: champion {result['rolled_back_from'] or '(none)'} "
              f"-> {result['champion']} (rolled back)")


@model_app.command("list")
def list_models(ctx: typer.Context, tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    """The tenant's models: champion, previous champion, versions, the champion's metrics."""
    current = session(ctx)
    if current.tenant_api is not None:
        current.required_tenant(tenant)
        views = current.tenant_api.models()
    else:
        views = models.model_views(current.connection.registry, current.required_tenant(tenant))
    if as_json:
        print_json(views)
        return
    rows = [(v["model"], v["champion"] or "-", v["previous_champion"] or "-", len(v["versions"]),
             v["versions"][-1] if v["versions"] else "-", format_metrics(v["champion_metrics"])) for v in views]
    print_table(["model", "champion", "previous", "versions", "latest", "champion metrics"], rows)


# -- predict --------------------------------------------------------------------------------------
def read_rows(path: Path, drop: list[str]) -> list[dict[str, Any]]:
    """CSV or Parquet rows as JSON-ready objects; missing values become null (the service names them)."""
    from tenantml.ml.dataset import read_table

    frame = read_table(path)
    missing = [c for c in drop if c not in frame.columns]
    if missing:
        raise InvalidRequest(f"--drop {missing[0]!r}: no such column in {str(path)!r}")
    rows = frame.drop(columns=drop).to_dict(orient="records")
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                row[key] = None
            elif hasattr(value, "item"):
                row[key] = value.item()
    if not rows:
        raise InvalidRequest(f"{str(path)!r} has no rows: add at least one")
    return rows


def post_rows(
    url: str, api_key: str, model: str, rows: list[dict[str, Any]], timeout_s: float = 60.0
) -> dict[str, Any]:
    """POST /predict once; errors of the service become tenantml errors with its message."""
    try:
        response = httpx.post(f"{url}/predict", json={"model": model, "rows": rows},
                              headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout_s)
    except httpx.HTTPError as err:
        raise PlatformError(f"the inference service at {url} cannot be reached ({type(err).__name__}): "
                            "is `tenantml up` running?") from err
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:500]}
    if response.status_code == 404:
        raise NotFound(body.get("error", "not found"))
    if 400 <= response.status_code < 500:
        raise InvalidRequest(f"{response.status_code}: {body.get('error', response.text[:500])}")
    if response.status_code != 200:
        raise TenantmlError(f"the inference service answered {response.status_code}: {body.get('error', '')}")
    return dict(body)


def _predict_key(given: str | None, current: Session) -> str:
    key = given or current.api_key
    if key is None:
        raise InvalidRequest(
            "predict calls the inference service as a tenant: pass --api-key or set TENANTML_API_KEY "
            "(the key printed by `tenantml tenant create`)"
        )
    return key


def _check_key_tenant(current: Session, api_key: str, requested: str | None) -> None:
    """With --tenant, make sure the key is that tenant's (the service would answer for the key's tenant)."""
    if requested is None:
        return
    owner = tenancy.tenant_for_key(current.connection.store, api_key)
    if owner is None:
        raise InvalidRequest("the API key is not a known tenant key: check it")
    if owner != requested:
        raise NotFound(f"tenant {requested!r} is not visible with this API key")


def _inference_url(given: str | None, current: Session) -> str:
    url = given or current.settings.serving.url
    if not url:
        raise PlatformError(
            f"no inference service: start the platform with `tenantml up` (home {current.settings.home}) "
            "or pass --url"
        )
    return str(url).rstrip("/")


@app.command()
def predict(
    ctx: typer.Context,
    model: ModelOption,
    file: Annotated[Path, typer.Option("--file", help="A CSV or Parquet file of feature rows.")],
    tenant: Annotated[str | None, typer.Option("--tenant", help="Check that the API key is this tenant's.")] = None,
    drop: Annotated[list[str] | None, typer.Option("--drop", metavar="COLUMN",
                                                   help="A column of the file that is not a feature; repeat it.")]
    = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="The tenant's API key (default: TENANTML_API_KEY).")]
    = None,
    url: Annotated[str | None, typer.Option("--url", help="The inference service (default: the running platform's).")]
    = None,
    as_json: JsonOption = False,
) -> None:
    """Predict the rows of a CSV or Parquet file over HTTP, as the tenant of the API key."""
    current = session(ctx)
    key = _predict_key(api_key, current)
    _check_key_tenant(current, key, tenant)
    rows = read_rows(file, drop or [])
    address = _inference_url(url, current)
    predictions: list[Any] = []
    versions: list[str] = []
    for start in range(0, len(rows), CHUNK_ROWS):
        answer = post_rows(address, key, model, rows[start : start + CHUNK_ROWS])
        predictions.extend(answer["predictions"])
        versions.append(str(answer["model_version"]))
    if len(set(versions)) > 1:
        print(f"warning: the champion changed during the run (versions {', '.join(dict.fromkeys(versions))})",
              file=sys.stderr)
    if as_json:
        print_json({"model": model, "model_version": versions[-1], "predictions": predictions})
    else:
        print(f"model {model} version {versions[-1]}: {len(predictions)} predictions", file=sys.stderr)
        for prediction in predictions:
            print(prediction)
