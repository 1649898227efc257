"""tenantml: scalable, multi-tenant, resumable ML training and inference on Prefect, MLflow and BentoML.

Where each part of the mission lives (see README.md, "Layout"):

- ``domain``: the rules, in plain Python (requests and attempts, UUID events and failover, admission, promotion, names, tenants);
- ``ports``: what the services need from the outside world;
- ``services``: the use cases (training master, worker attempt, admission, finalization, reconciliation, tenancy);
- ``ml``: algorithms, parameters and datasets;
- ``adapters``: SQLAlchemy, MLflow, Prefect and the file system behind the ports;
- ``inference``: the multi-tenant inference core served by ``serving/``;
- ``bootstrap``: builds adapters from settings;
- ``local``: the embedded platform of ``tenantml up``;
- ``cli``: the ``tenantml`` command."""

__all__ = [
    "adapters",
    "bootstrap",
    "cli",
    "domain",
    "errors",
    "inference",
    "local",
    "ml",
    "ports",
    "services",
    "settings",
]
