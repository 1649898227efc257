"""Which version serves: the promotion policy, parsed once and decided from metrics alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tenantml.errors import InvalidRequest

__all__ = ["DEFAULT_METRICS", "LOWER_IS_BETTER", "PromotionPolicy", "lower_is_better", "should_promote"]

LOWER_IS_BETTER = frozenset({"mse", "rmse", "mae", "log_loss", "loss"})
DEFAULT_METRICS = ("validation_accuracy", "validation_r2", "accuracy", "r2")
"""Compared by ``if-better``, the first both versions have: a model is judged on rows it never learned
from, and against a champion registered before the validation split, on the training rows as then."""


def lower_is_better(metric: str) -> bool:
    """Errors and losses, also as ``train_loss``, ``validation_rmse``, ..."""
    return metric in LOWER_IS_BETTER or metric.rpartition("_")[2] in LOWER_IS_BETTER or metric.endswith("log_loss")


@dataclass(frozen=True)
class PromotionPolicy:
    """``always``, or ``if-better`` on ``metric`` (None: the algorithm's main metric)."""

    if_better: bool = False
    metric: str | None = None

    @classmethod
    def parse(cls, text: str) -> PromotionPolicy:
        """``always``, ``if-better`` or ``if-better:<metric>``; InvalidRequest naming the value otherwise."""
        kind, sep, metric = text.partition(":")
        if text == "always":
            return cls()
        if kind == "if-better" and (not sep or metric):
            return cls(if_better=True, metric=metric or None)
        raise InvalidRequest(f"invalid promotion policy {text!r}: use 'always', 'if-better' or 'if-better:<metric>'")

    def __str__(self) -> str:
        if not self.if_better:
            return "always"
        return "if-better" + (f":{self.metric}" if self.metric else "")

    def decide(
        self, candidate: Mapping[str, float], champion: Mapping[str, float] | None
    ) -> tuple[bool, str]:
        """Promote ``candidate`` over the champion's metrics? Returns (yes, why)."""
        if not self.if_better or champion is None:
            return True, "promoted: " + ("no champion yet" if self.if_better else "policy is 'always'")
        metric = self.metric or next((m for m in DEFAULT_METRICS if m in candidate and m in champion),
                                     next((m for m in DEFAULT_METRICS if m in candidate), ""))
        if metric not in candidate or metric not in champion:
            return True, f"promoted: metric {metric!r} missing on one side, cannot compare"
        new, old = float(candidate[metric]), float(champion[metric])
        better = new < old if lower_is_better(metric) else new > old
        verdict = "promoted" if better else "kept champion"
        return better, f"{verdict}: {metric} {new:.6g} vs champion {old:.6g}"


def should_promote(
    policy: str, candidate: Mapping[str, float], champion: Mapping[str, float] | None
) -> tuple[bool, str]:
    """:meth:`PromotionPolicy.decide` for a policy given as text."""
    return PromotionPolicy.parse(policy).decide(candidate, champion)
