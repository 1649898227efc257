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
        ignored = _differences(spec, active.spec)
        return Decision.DUPLICATE, (
            f"{spec.tenant}/{spec.model} is already training: request {active.id}"
            + (f"; this submission's {ignored} were ignored: cancel that request (`tenantml run cancel "
               f"{active.id}`) and submit again to train with them" if ignored else "")
        )
    if not force and last_completed is not None and (
        last_completed.spec.training_fingerprint == spec.training_fingerprint
    ):
        return Decision.UP_TO_DATE, (
            f"up to date: same data and parameters as request {last_completed.id} "
            f"(version {last_completed.model_version})"
        )
    return Decision.ACCEPTED, "accepted"


def _differences(new: TrainingSpec, running: TrainingSpec) -> str:
    """What a duplicate submission asked for that the running training does not do, in words."""
    changed = [name for name in ("dataset", "target", "algorithm", "promotion")
               if getattr(new, name) != getattr(running, name)]
    keys = sorted({*new.params, *running.params})
    changed += [f"{key}={new.params[key]!r}" if key in new.params else f"{key} (unset)"
                for key in keys if new.params.get(key) != running.params.get(key)]
    if new.dataset_fingerprint and running.dataset_fingerprint and "dataset" not in changed and (
        new.dataset_fingerprint != running.dataset_fingerprint
    ):
        changed.append("dataset contents")
    return ", ".join(changed) and f"settings ({', '.join(changed)})"
