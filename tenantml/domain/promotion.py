"""Which version serves: the promotion policy, decided from metrics alone."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["LOWER_IS_BETTER", "should_promote"]

LOWER_IS_BETTER = frozenset({"mse", "rmse", "mae", "log_loss"})
DEFAULT_METRICS = ("accuracy", "r2")


def should_promote(
    policy: str, candidate: Mapping[str, float], champion: Mapping[str, float] | None
) -> tuple[bool, str]:
    """``always``, or ``if-better[:metric]`` against the champion's metrics. Returns (yes, why)."""
    if policy == "always" or champion is None:
        return True, "promoted: " + ("policy is 'always'" if policy == "always" else "no champion yet")
    metric = policy.partition(":")[2] or next((m for m in DEFAULT_METRICS if m in candidate), "")
    if metric not in candidate or metric not in champion:
        return True, f"promoted: metric {metric!r} missing on one side, cannot compare"
    new, old = float(candidate[metric]), float(champion[metric])
    better = new < old if metric in LOWER_IS_BETTER else new > old
    verdict = "promoted" if better else "kept champion"
    return better, f"{verdict}: {metric} {new:.6g} vs champion {old:.6g}"
