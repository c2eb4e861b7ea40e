"""Pure functions: the children's observed state -> the pipeline's phase and conditions.

Conditions follow Kubernetes conventions: ``type``, ``status`` ("True"/"False"/"Unknown"), ``reason``
(CamelCase), ``message`` and ``lastTransitionTime`` (kept while the status does not change).
A Deployment counts as rolled out by the same rules as ``kubectl rollout status``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"

PHASE_PROGRESSING = "Progressing"
PHASE_RUNNING = "Running"
PHASE_PAUSED = "Paused"
PHASE_DEGRADED = "Degraded"


@dataclass(frozen=True)
class Problem:
    """Why a pipeline is Degraded (reason is CamelCase, message is for humans)."""

    reason: str
    message: str


@dataclass(frozen=True)
class Rollout:
    """How far one worker Deployment is from its desired state."""

    name: str
    desired: int
    ready: int
    done: bool
    message: str
    failure: str | None = None


@dataclass
class Observed:
    """Everything the status is derived from."""

    generation: int
    paused: bool
    model: str | None
    rollouts: dict[str, Rollout] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    autoscaling: dict[str, Any] | None = None


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rollout(name: str, desired: int, deployment: Mapping[str, Any] | None) -> Rollout:
    """Judge one Deployment from its real ``metadata.generation`` and ``status`` (None: it does not exist)."""
    if deployment is None:
        return Rollout(name, desired, 0, False, f"Deployment {name} does not exist yet")
    meta = deployment.get("metadata", {})
    spec = deployment.get("spec", {})
    st = deployment.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    ready = int(st.get("readyReplicas") or 0)
    updated = int(st.get("updatedReplicas") or 0)
    available = int(st.get("availableReplicas") or 0)
    total = int(st.get("replicas") or 0)
    failure = None
    for cond in st.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            failure = f"Deployment {name}: {cond.get('message') or 'progress deadline exceeded'}"
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            failure = f"Deployment {name}: {cond.get('message') or cond.get('reason')}"
    if int(st.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return Rollout(
            name, replicas, ready, False, f"Deployment {name}: waiting for the update to be observed", failure
        )
    if updated < replicas:
        msg = f"Deployment {name}: {updated} of {replicas} replicas updated"
        return Rollout(name, replicas, ready, False, msg, failure)
    if total > updated:
        msg = f"Deployment {name}: {total - updated} old replicas pending termination"
        return Rollout(name, replicas, ready, False, msg, failure)
    if available < updated or ready < replicas:
        msg = f"Deployment {name}: {min(available, ready)} of {replicas} replicas available"
        return Rollout(name, replicas, ready, False, msg, failure)
    return Rollout(name, replicas, ready, True, f"Deployment {name}: {ready}/{replicas} ready", failure)


def _condition(
    ctype: str, status: bool, reason: str, message: str, previous: Sequence[Mapping[str, Any]], now: str
) -> dict[str, Any]:
    value = "True" if status else "False"
    since = now
    for old in previous:
        if old.get("type") == ctype and old.get("status") == value and old.get("lastTransitionTime"):
            since = str(old["lastTransitionTime"])
    return {"type": ctype, "status": value, "reason": reason, "message": message, "lastTransitionTime": since}


def derive(
    observed: Observed, previous: Mapping[str, Any] | None = None, *, now: str | None = None
) -> dict[str, Any]:
    """The ``status`` of a SentimentPipeline."""
    now = now or now_rfc3339()
    old_conditions: Sequence[Mapping[str, Any]] = (previous or {}).get("conditions") or []
    problems = list(observed.problems) + [
        Problem("DeploymentFailed", r.failure) for r in observed.rollouts.values() if r.failure
    ]
    rollouts = list(observed.rollouts.values())
    all_done = bool(rollouts) and all(r.done for r in rollouts)
    waiting = "; ".join(r.message for r in rollouts if not r.done)

    if problems:
        degraded = _condition(
            DEGRADED, True, problems[0].reason, "; ".join(p.message for p in problems), old_conditions, now
        )
    else:
        degraded = _condition(DEGRADED, False, "AsExpected", "no problem found", old_conditions, now)

    if all_done:
        progressing = _condition(
            PROGRESSING, False, "RolloutComplete", "all workers rolled out", old_conditions, now
        )
    elif rollouts:
        progressing = _condition(PROGRESSING, True, "RollingOut", waiting, old_conditions, now)
    else:
        progressing = _condition(
            PROGRESSING, False, "NotApplied", "no worker Deployment applied", old_conditions, now
        )

    if problems:
        phase = PHASE_DEGRADED
        ready = _condition(READY, False, problems[0].reason, degraded["message"], old_conditions, now)
    elif observed.paused:
        phase = PHASE_PAUSED
        msg = "state is paused: workers scaled to 0" if all_done else f"pausing: {waiting}"
        ready = _condition(READY, False, "Paused", msg, old_conditions, now)
    elif all_done:
        phase = PHASE_RUNNING
        summary = ", ".join(f"{r.name} {r.ready}/{r.desired}" for r in rollouts)
        ready = _condition(READY, True, "WorkersReady", f"all workers ready: {summary}", old_conditions, now)
    else:
        phase = PHASE_PROGRESSING
        ready = _condition(READY, False, "RollingOut", waiting, old_conditions, now)

    status: dict[str, Any] = {
        "observedGeneration": observed.generation,
        "phase": phase,
        "conditions": [ready, progressing, degraded],
    }
    for component, r in observed.rollouts.items():
        status[f"{component}Replicas"] = r.ready
        status[f"{component}DesiredReplicas"] = r.desired
    if observed.model is not None:
        status["model"] = observed.model
    if observed.autoscaling is not None:
        status["autoscaling"] = observed.autoscaling
    return status


def condition(status: Mapping[str, Any] | None, ctype: str) -> Mapping[str, Any] | None:
    """Look up one condition by type."""
    for cond in (status or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return None
