"""MLflow's errors, translated at the edge: nothing from MLflow reaches a service or a user.

A call that fails because the server is down, answers 5xx or refuses the request becomes
:class:`~tenantml.errors.ServiceUnavailable` naming the server and what to check. Callers that
expect "not found" ask :func:`is_missing` first and raise their own ``NotFound``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mlflow.exceptions import MlflowException

from tenantml.errors import ServiceUnavailable, TenantmlError

__all__ = ["is_missing", "mlflow_calls"]


def is_missing(err: Exception) -> bool:
    """MLflow's way of saying a run, model, version or alias does not exist.

    With basic-auth on, MLflow checks permissions before it looks, and a registered model that does
    not exist has no grant: the answer is 403 "Permission denied", not 404. The platform's
    identities hold wildcard grants over every model that exists (tenantml/adapters/mlflow_access.py),
    so for them a denied read means a model that is not there.
    """
    code = getattr(err, "error_code", "")
    text = str(err).lower()
    denied = code == "PERMISSION_DENIED" or ("error code 403" in text and "permission denied" in text)
    return code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"} or "not found" in text or denied


@contextmanager
def mlflow_calls(tracking_uri: str, doing: str) -> Iterator[None]:
    """Translate what MLflow (or the HTTP stack under it) raises while ``doing`` something."""
    try:
        yield
    except TenantmlError:
        raise
    except (MlflowException, OSError) as err:  # requests' ConnectionError is an OSError
        raise ServiceUnavailable(
            f"MLflow at {tracking_uri} failed while {doing}: {type(err).__name__}: {str(err).strip()[:300]}; "
            "check that the MLflow server runs (TENANTML_MLFLOW__TRACKING_URI)"
        ) from err
