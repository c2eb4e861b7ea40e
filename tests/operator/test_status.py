"""Pure status derivation: Deployments' real status fields -> phase and conditions."""

from __future__ import annotations

from sentiment_operator.status import Observed, Problem, condition, derive, rollout


def _deployment(replicas=2, ready=2, generation=3, observed=3, conditions=()):
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": list(conditions),
        },
    }


def test_a_deployment_is_done_only_when_observed_updated_and_ready():
    assert rollout("d", 2, _deployment()).done
    assert not rollout("d", 2, _deployment(observed=2)).done
    assert not rollout("d", 2, _deployment(ready=1)).done
    assert not rollout("d", 2, None).done


def test_progress_deadline_exceeded_degrades_the_pipeline():
    stuck = _deployment(
        ready=0,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "timed out",
            }
        ],
    )
    status = derive(
        Observed(generation=1, paused=False, model="m", rollouts={"consumer": rollout("c", 2, stuck)})
    )
    assert status["phase"] == "Degraded"
    degraded = condition(status, "Degraded")
    assert degraded is not None
    assert (degraded["status"], degraded["reason"]) == ("True", "DeploymentFailed")
    assert "timed out" in degraded["message"]


def test_transition_time_is_kept_while_a_condition_does_not_change():
    observed = Observed(generation=1, paused=False, model="m", problems=[Problem("SecretNotFound", "x")])
    first = derive(observed, None, now="2024-01-01T00:00:00Z")
    again = derive(observed, first, now="2024-01-01T00:05:00Z")
    assert (condition(again, "Degraded") or {})["lastTransitionTime"] == "2024-01-01T00:00:00Z"
    healed = derive(Observed(generation=2, paused=False, model="m"), again, now="2024-01-01T00:06:00Z")
    assert (condition(healed, "Degraded") or {})["lastTransitionTime"] == "2024-01-01T00:06:00Z"
    assert healed["observedGeneration"] == 2
