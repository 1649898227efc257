"""`tenantml model ...` and `tenantml predict`: registered models and inference (see serving/).

``model promote``, ``model rollback`` and ``model list`` act on the MLflow registry, as an operator
for any ``--tenant`` or, with ``TENANTML_API_KEY``, as that key's tenant. ``predict`` goes through
the inference service over HTTP like any client, so it needs a tenant's key (``--api-key`` or
``TENANTML_API_KEY``): the tenant is the key's, never a flag.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from tenantml.domain.names import check_model_name, registered_model_name
from tenantml.errors import InvalidRequest, NotFound, PlatformError, TenantmlError
from tenantml.settings import Settings

__all__ = ["register"]

CHUNK_ROWS = 500
"""Rows per request of `tenantml predict`, to stay under the service's body limit."""


def _tenant(args: argparse.Namespace, settings: Settings) -> tuple[str, Any]:
    from tenantml.cli import _required_tenant
    from tenantml.bootstrap import Connection

    connection = Connection(settings)
    return _required_tenant(settings, connection, args.tenant), connection


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


# -- model promote / rollback / list --------------------------------------------------------------
def cmd_model_promote(args: argparse.Namespace, settings: Settings) -> int:
    tenant, connection = _tenant(args, settings)
    model, version = check_model_name(args.model), str(args.version)
    registry = connection.registry
    registry.version_tags(tenant, model, version)  # NotFound if there is no such version
    previous = registry.champion(tenant, model)
    if previous != version:
        registry.set_champion(tenant, model, version)
    result = {"tenant": tenant, "model": model, "champion": version, "previous_champion": previous}
    if args.json:
        _print_json(result)
    elif previous == version:
        print(f"{registered_model_name(tenant, model)}: version {version} is already the champion")
    else:
        print(f"{registered_model_name(tenant, model)}: champion {previous or '(none)'} -> {version}")
    return 0


def cmd_model_rollback(args: argparse.Namespace, settings: Settings) -> int:
    tenant, connection = _tenant(args, settings)
    model = check_model_name(args.model)
    rolled_from, rolled_to = connection.registry.rollback_champion(tenant, model)
    result = {"tenant": tenant, "model": model, "champion": rolled_to, "rolled_back_from": rolled_from}
    if args.json:
        _print_json(result)
    else:
        print(f"{registered_model_name(tenant, model)}: champion {rolled_from or '(none)'} -> {rolled_to} (rolled back)")
    return 0


def model_views(registry: Any, tenant: str) -> list[dict[str, Any]]:
    """The tenant's registered models: champion, previous champion, versions, champion metrics."""
    from tenantml.adapters.registry import CHAMPION, PREVIOUS_CHAMPION

    prefix = registered_model_name(tenant, "")
    found = registry.client.search_registered_models(filter_string=f"name LIKE '{prefix}%'")
    views = []
    for registered in sorted(found, key=lambda r: r.name):
        if not registered.name.startswith(prefix):
            continue
        model = registered.name[len(prefix) :]
        aliases = {alias: str(version) for alias, version in (registered.aliases or {}).items()}
        champion = aliases.get(CHAMPION)
        metrics: dict[str, float] = {}
        if champion is not None:
            tags = registry.version_tags(tenant, model, champion)
            metrics = {k.removeprefix("tenantml.metric."): float(v) for k, v in tags.items()
                       if k.startswith("tenantml.metric.")}
        views.append({
            "model": model,
            "registered_name": registered.name,
            "champion": champion,
            "previous_champion": aliases.get(PREVIOUS_CHAMPION),
            "versions": registry.list_versions(tenant, model),
            "champion_metrics": metrics,
        })
    return views


def cmd_model_list(args: argparse.Namespace, settings: Settings) -> int:
    from tenantml.cli import _table

    tenant, connection = _tenant(args, settings)
    views = model_views(connection.registry, tenant)
    if args.json:
        _print_json(views)
        return 0
    rows = [(v["model"], v["champion"] or "-", v["previous_champion"] or "-", len(v["versions"]),
             v["versions"][-1] if v["versions"] else "-",
             " ".join(f"{k}={val:.4g}" for k, val in sorted(v["champion_metrics"].items()))) for v in views]
    print(_table(rows, ["model", "champion", "previous", "versions", "latest", "champion metrics"]))
    return 0


# -- predict --------------------------------------------------------------------------------------
def read_rows(path: Path, drop: list[str]) -> list[dict[str, Any]]:
    """CSV or Parquet rows as JSON-ready objects; missing values become null (the service names them)."""
    from tenantml.ml.dataset import read_table

    frame = read_table(path)
    missing = [c for c in drop if c not in frame.columns]
    if missing:
        raise InvalidRequest(f"--drop {missing[0]!r}: no such column in {str(path)!r}")
    frame = frame.drop(columns=drop)
    rows = frame.to_dict(orient="records")
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                row[key] = None
            elif hasattr(value, "item"):
                row[key] = value.item()
    if not rows:
        raise InvalidRequest(f"{str(path)!r} has no rows: add at least one")
    return rows


def _inference_url(args: argparse.Namespace, settings: Settings) -> str:
    url = args.url or settings.serving.url
    if not url:
        raise PlatformError(
            f"no inference service: start the platform with `tenantml up` (home {settings.home}) or pass --url"
        )
    return str(url).rstrip("/")


def _api_key(args: argparse.Namespace, settings: Settings) -> str:
    if args.api_key:
        return str(args.api_key)
    if settings.api_key is not None:
        return settings.api_key.get_secret_value()
    raise InvalidRequest(
        "predict calls the inference service as a tenant: pass --api-key or set TENANTML_API_KEY "
        "(the key printed by `tenantml tenant create`)"
    )


def _check_key_tenant(api_key: str, requested: str | None, settings: Settings) -> None:
    """With --tenant, make sure the key is that tenant's (the service would answer for the key's tenant)."""
    if requested is None:
        return
    from tenantml.domain.tenant import hash_api_key
    from tenantml.bootstrap import Connection

    owner = Connection(settings).store.tenant_for_key(hash_api_key(api_key))
    if owner is None:
        raise InvalidRequest("the API key is not a known tenant key: check it")
    if owner != requested:
        raise NotFound(f"tenant {requested!r} is not visible with this API key")


def post_rows(url: str, api_key: str, model: str, rows: list[dict[str, Any]], timeout_s: float = 60.0) -> dict[str, Any]:
    """POST /predict once; errors of the service become tenantml errors with its message."""
    import httpx

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


def cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    api_key = _api_key(args, settings)
    model = str(args.model)
    _check_key_tenant(api_key, args.tenant, settings)
    rows = read_rows(Path(args.file), args.drop)
    url = _inference_url(args, settings)
    predictions: list[Any] = []
    versions: list[str] = []
    for start in range(0, len(rows), CHUNK_ROWS):
        answer = post_rows(url, api_key, model, rows[start : start + CHUNK_ROWS])
        predictions.extend(answer["predictions"])
        versions.append(str(answer["model_version"]))
    if len(set(versions)) > 1:
        print(f"warning: the champion changed during the run (versions {', '.join(dict.fromkeys(versions))})",
              file=sys.stderr)
    if args.json:
        _print_json({"model": model, "model_version": versions[-1], "predictions": predictions})
    else:
        print(f"model {model} version {versions[-1]}: {len(predictions)} predictions", file=sys.stderr)
        for prediction in predictions:
            print(prediction)
    return 0


# -- parser ---------------------------------------------------------------------------------------
def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the model and predict commands to the `tenantml` parser."""
    model = commands.add_parser("model", help="registered models: list, promote, roll back")
    sub = model.add_subparsers(dest="model_command", required=True)

    promote = sub.add_parser("promote", help="make a version the champion (the one served)")
    promote.add_argument("--tenant")
    promote.add_argument("--model", required=True)
    promote.add_argument("--version", required=True)
    promote.add_argument("--json", action="store_true")
    promote.set_defaults(handler=cmd_model_promote)

    rollback = sub.add_parser("rollback", help="give the champion back to the previous champion")
    rollback.add_argument("--tenant")
    rollback.add_argument("--model", required=True)
    rollback.add_argument("--json", action="store_true")
    rollback.set_defaults(handler=cmd_model_rollback)

    listing = sub.add_parser("list", help="the tenant's models, champions and versions")
    listing.add_argument("--tenant")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_model_list)

    predict = commands.add_parser("predict", help="predict the rows of a CSV or Parquet file over HTTP")
    predict.add_argument("--tenant", help="check that the API key is this tenant's")
    predict.add_argument("--model", required=True)
    predict.add_argument("--file", required=True, help="CSV or Parquet file of feature rows")
    predict.add_argument("--drop", action="append", default=[], metavar="COLUMN",
                         help="a column of the file that is not a feature (e.g. the target)")
    predict.add_argument("--api-key", help="the tenant's API key (default: TENANTML_API_KEY)")
    predict.add_argument("--url", help="the inference service (default: the running platform's)")
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(handler=cmd_predict)
