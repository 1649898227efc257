"""The tenant API: a tenant's own HTTP surface for datasets, trainings and models, by its API key.

Its own process (``python -m tenantml.tenant_api.serve``, started by ``tenantml up``), not a route
of the inference service: inference workers live on their own machines and scale with prediction
traffic, while this is the control plane, which scales with tenants and writes the training
metadata. It shares the inference service's key lookup (:mod:`tenantml.inference.keys`) and its
status scheme, and answers every error as ``{"code": ..., "message": ...}``.

``app`` builds the FastAPI application from a :class:`~tenantml.tenant_api.app.Backend`; ``routes``
holds the routes; ``errors`` the error codes; ``serve`` is the entrypoint; ``client`` is the httpx
client the CLI uses in tenant mode. Nothing here is imported by the core.
"""
