"""How a registered model version is named in the BentoML model store (no BentoML import here).

BentoML tags are lowercase, at most 63 characters, while registry names are ``<tenant>.<model>``
with mixed case and up to 192 characters. The store name is a readable slug plus a short hash of
the exact registry name, so two names never meet; the labels keep the exact name.
"""

from __future__ import annotations

import hashlib
import re

from tenantml.domain.names import registered_model_name

__all__ = [
    "BENTO_FILE",
    "BENTO_FILE_DIGEST",
    "LABEL_NAME", "LABEL_RUN", "LABEL_TENANT", "LABEL_VERSION", "bento_labels", "bento_name", "bento_tag",
]

BENTO_FILE = "model.skops"
"""The file an imported version is stored as: skops, loaded with the trusted types only."""
BENTO_FILE_DIGEST = "model_sha256"
"""Metadata: ``sha256:<hex>`` of BENTO_FILE, checked before it is loaded."""
LABEL_NAME = "registry_name"
LABEL_VERSION = "registry_version"
LABEL_RUN = "run_id"
LABEL_TENANT = "tenant"
_SLUG = re.compile(r"[^a-z0-9._-]+")


def bento_name(tenant: str, model: str) -> str:
    registry_name = registered_model_name(tenant, model)
    digest = hashlib.sha256(registry_name.encode()).hexdigest()[:10]
    slug = _SLUG.sub("-", registry_name.lower())[:50].strip("-._") or "model"
    return f"{slug}-{digest}"


def bento_tag(tenant: str, model: str, version: str) -> str:
    """``<slug>-<hash>:v<version>``, e.g. ``acme.churn-1a2b3c4d5e:v3``."""
    return f"{bento_name(tenant, model)}:v{version}"


def bento_labels(tenant: str, model: str, version: str, run_id: str | None) -> dict[str, str]:
    return {
        LABEL_NAME: registered_model_name(tenant, model),
        LABEL_VERSION: str(version),
        LABEL_RUN: run_id or "",
        LABEL_TENANT: tenant,
    }
