"""Tenants and their API keys. Keys are shown once and stored only as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["API_KEY_PREFIX", "hash_api_key", "new_api_key"]

API_KEY_PREFIX = "tml_"


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()
