"""May this model be trained now? (claim 2 of the patent: judged by status and timestamps.)

- While the tenant's model has an active request, a new one is a duplicate: it answers with the
  running request and changes nothing (at most one active training per tenant and model).
- When the data and parameters equal those of the last completed training, the model is up to
  date: the request is recorded as skipped, pointing at that training's version, unless forced.
- Otherwise the request is accepted and waits for its first attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tenantml.domain.request import TrainingRequest, TrainingSpec

__all__ = ["Admission", "Decision", "judge"]


class Decision(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    UP_TO_DATE = "up_to_date"


@dataclass(frozen=True)
class Admission:
    request_id: str
    decision: Decision
    message: str


def judge(
    spec: TrainingSpec, force: bool, active: TrainingRequest | None, last_completed: TrainingRequest | None
) -> tuple[Decision, str]:
    """The decision for a new request of ``spec``, and why, in words for the tenant."""
    if active is not None:
        return Decision.DUPLICATE, f"{spec.tenant}/{spec.model} is already training: request {active.id}"
    if not force and last_completed is not None and (
        last_completed.spec.training_fingerprint == spec.training_fingerprint
    ):
        return Decision.UP_TO_DATE, (
            f"up to date: same data and parameters as request {last_completed.id} "
            f"(version {last_completed.model_version})"
        )
    return Decision.ACCEPTED, "accepted"
