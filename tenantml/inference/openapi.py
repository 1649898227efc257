"""The inference service's OpenAPI document and its Swagger page at ``/docs``.

BentoML generates a spec from the service (``/docs.json``) titled with the service's name, at
version "None", without a security scheme and with its own error shapes, none of which this
service answers. :func:`document` turns it into the service's real contract: a title and the
tenantml version, a Bearer scheme on ``POST /predict`` (so Swagger's "Authorize" sends
``Authorization: Bearer <key>`` on "Try it out"), a request example whose row is built from a
feature schema by the rules the service checks rows with, and every error status the gate and the
service answer (400, 401, 404, 413, 422, 503, 500, 504) in their one shape ``{"error", "field"}``.

The document is the same for everyone: it is served without a key, so it names no tenant's model.
Its example row comes from :data:`EXAMPLE_SCHEMA`, a generic schema; a tenant's own model takes
the features of its ``tenantml.features`` tag (``tenantml model list`` names the models), and a wrong row is a 422
naming the field and the features the model takes. Plain dictionaries, no framework import.
"""

from __future__ import annotations

import copy
import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from tenantml.inference.schema import FeatureSchema, Kind

__all__ = ["DOCS_PATH", "EXAMPLE_MODEL", "EXAMPLE_SCHEMA", "SPEC_PATH", "SECURITY_SCHEME", "TITLE", "document",
           "example_row", "swagger_page"]

TITLE = "tenantml inference"
DOCS_PATH = "/docs"
SPEC_PATH = "/docs.json"  # BentoML's own path: its page at "/" shows the same document
SECURITY_SCHEME = "tenantApiKey"
PREDICT = "/predict"
EXAMPLE_MODEL = "churn"
EXAMPLE_SCHEMA = FeatureSchema.from_pairs([("age", "int64"), ("income", "float64"), ("member", "bool"),
                                           ("score", "float64")])
_EXAMPLE_VALUES: dict[Kind, object] = {Kind.INTEGER: 42, Kind.NUMBER: 3.25, Kind.BOOLEAN: True}

_ERRORS: dict[int, tuple[str, str, str | None]] = {  # status: (when, example message, example field)
    400: ("The body is not JSON, or is empty.",
          'the body is not valid JSON (error at line 1 column 2): send a JSON object {"model": "<model>", '
          '"rows": [{"<feature>": <value>, ...}]}', None),
    401: ("No `Authorization: Bearer <key>` header, or a key no tenant holds (or a disabled tenant's).",
          "missing or unknown API key: send the header 'Authorization: Bearer <tenant API key>'", None),
    404: ("The caller's tenant has no model of that name with a champion version (another tenant's model "
          "is a 404 too).", "model 'churn' not found: check its name, or train it and wait until a version "
          "is promoted", None),
    413: ("The body is over `TENANTML_SERVING__MAX_BODY_BYTES`: send fewer rows per request.",
          "the body is over the limit of 1048576 bytes: send fewer rows per request", None),
    422: ("The body is not `{\"model\", \"rows\"}`, or a row does not fit the model's features; `field` names "
          "the first wrong one.", "rows[0].age: must be an integer, got string", "rows[0].age"),
    503: ("The model cannot be served now (its files do not match their digest, or MLflow or the database "
          "is down).", "model 'churn' version 3 is refused: its files do not match their digest; ...", None),
    500: ("An unexpected error; the service log has its type (never the rows).",
          "internal error: see the service log", None),
    504: ("No answer within the request timeout.", "not able to process the request in 60 seconds", None),
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What is wrong and how to fix it; never an input value"},
        "field": {"type": "string", "description": "The field at fault (422 only): `model`, `rows[3].age`"},
    },
}


def package_version() -> str:
    try:
        return version("tenantml")
    except PackageNotFoundError:  # running from a source tree that was not installed (a Bento)
        return "0+unknown"


def example_row(schema: FeatureSchema) -> dict[str, object]:
    """A row the schema accepts: one value of each feature's kind, in the schema's order."""
    row = {feature.name: _EXAMPLE_VALUES[feature.kind] for feature in schema.features}
    schema.matrix([row])  # the example must pass the very check requests meet
    return row


def _error_response(status: int) -> dict[str, Any]:
    when, message, field = _ERRORS[status]
    example: dict[str, str] = {"error": message, **({"field": field} if field else {})}
    return {"description": when,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}, "example": example}}}


def document(generated: dict[str, Any], schema: FeatureSchema = EXAMPLE_SCHEMA) -> dict[str, Any]:
    """BentoML's generated spec, made this service's contract (see the module docstring)."""
    spec = copy.deepcopy(generated)
    features = ", ".join(f"`{name}` ({kind})" for name, kind in schema.describe().items())
    spec["info"] = {
        "title": TITLE,
        "version": package_version(),
        "description": (
            "Predictions from each tenant's champion models. Authenticate with the tenant's API key: "
            "**Authorize** takes the key alone and sends `Authorization: Bearer <key>`; the tenant comes from "
            "the key, never from the body. Each row is an object with exactly the model's features (the "
            f"example's model takes {features}); `tenantml model list` lists a tenant's models."
        ),
    }
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = {SECURITY_SCHEME: {
        "type": "http", "scheme": "bearer", "bearerFormat": "tenantml API key (tml_...)",
        "description": "The tenant's API key, as `tenantml tenant create` printed it.",
    }}
    operation = spec["paths"][PREDICT]["post"]
    operation["summary"] = "Predict rows with the champion version of one of the caller's models"
    operation["security"] = [{SECURITY_SCHEME: []}]
    body = {"model": EXAMPLE_MODEL, "rows": [example_row(schema)]}
    for media in operation.get("requestBody", {}).get("content", {}).values():
        media["example"] = body
    ok = operation["responses"].get("200") or operation["responses"].get(200) or {"description": "Predictions"}
    for media in ok.get("content", {}).values():
        media["example"] = {"predictions": ["yes"], "model_version": "3"}
    operation["responses"] = {"200": ok, **{str(status): _error_response(status) for status in _ERRORS}}
    return spec


def swagger_page(spec_url: str = SPEC_PATH, static: str = "/static_content") -> str:
    """Swagger UI from BentoML's bundled copy (no page, script or tracker from elsewhere)."""
    config = json.dumps({"url": spec_url, "dom_id": "#swagger-ui", "deepLinking": True, "persistAuthorization": True,
                         "tryItOutEnabled": True})
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>{TITLE}: API docs</title>
  <link rel="stylesheet" type="text/css" href="{static}/swagger-ui.css" />
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{static}/swagger-ui-bundle.js" charset="UTF-8"></script>
  <script>window.ui = SwaggerUIBundle({config});</script>
</body>
</html>
"""
