"""Pure lag-aware scaling rule for the inference Deployment.

``replicas = ceil(backlog / targetBacklogPerReplica)``, clamped to ``[minReplicas, maxReplicas]``. Scaling up
is immediate; scaling down waits until the backlog has allowed fewer replicas for the whole stabilization
window since the last change (no flapping on a bursty stream). An unknown backlog (no worker answered)
keeps the current count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .spec import Autoscaling


@dataclass(frozen=True)
class ScaleDecision:
    replicas: int
    reason: str
    changed: bool


def clamp(value: int, low: int, high: int) -> int:
    """The one bound on inference replicas: every count the operator asks for goes through it."""
    return max(low, min(high, value))


def within(bounds: Autoscaling, replicas: int | None) -> int:
    """``replicas`` (None: not decided yet, i.e. the minimum) within the spec's autoscaling bounds."""
    low, high = bounds.min_replicas, bounds.max_replicas
    return clamp(low if replicas is None else replicas, low, high)


def replicas_for_backlog(
    backlog: float, *, target_per_replica: int, min_replicas: int, max_replicas: int
) -> int:
    """How many inference replicas a backlog needs, within bounds."""
    if backlog < 0 or math.isnan(backlog):
        raise ValueError(f"backlog must be a non-negative number, got {backlog}")
    if target_per_replica < 1:
        raise ValueError("target_per_replica must be >= 1")
    return clamp(math.ceil(backlog / target_per_replica), min_replicas, max_replicas)


def decide(
    *,
    backlog: float | None,
    current: int,
    min_replicas: int,
    max_replicas: int,
    target_per_replica: int,
    now: float,
    last_change: float | None,
    stabilization_seconds: float,
) -> ScaleDecision:
    """The next replica count for the inference Deployment, with the reason (for events and status)."""
    bounded = clamp(current, min_replicas, max_replicas)
    if backlog is None:
        return ScaleDecision(
            bounded, "backlog unknown: keeping the current replica count", bounded != current
        )
    wanted = replicas_for_backlog(
        backlog, target_per_replica=target_per_replica, min_replicas=min_replicas, max_replicas=max_replicas
    )
    if wanted > bounded:
        return ScaleDecision(wanted, f"backlog {backlog:g} needs {wanted} replicas: scaling up", True)
    if wanted < bounded:
        waited = math.inf if last_change is None else now - last_change
        if waited < stabilization_seconds:
            return ScaleDecision(
                bounded,
                f"backlog {backlog:g} allows {wanted} replicas: holding {bounded} "
                f"for {stabilization_seconds - waited:.0f}s more (stabilization)",
                bounded != current,
            )
        return ScaleDecision(wanted, f"backlog {backlog:g} allows {wanted} replicas: scaling down", True)
    return ScaleDecision(bounded, f"backlog {backlog:g}: {bounded} replicas suffice", bounded != current)
