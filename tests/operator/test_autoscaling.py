"""The pure scaling rule: backlog -> inference replicas."""

from __future__ import annotations

import pytest
from sentiment_operator.autoscaling import decide, replicas_for_backlog

BOUNDS = {"target_per_replica": 100, "min_replicas": 1, "max_replicas": 5}


@pytest.mark.parametrize(
    ("backlog", "replicas"),
    [(0, 1), (1, 1), (100, 1), (101, 2), (350, 4), (500, 5), (10_000, 5)],
)
def test_replicas_are_the_backlog_over_the_target_rounded_up_within_bounds(backlog, replicas):
    assert replicas_for_backlog(backlog, **BOUNDS) == replicas


def test_min_zero_lets_an_empty_backlog_scale_to_zero():
    assert replicas_for_backlog(0, target_per_replica=100, min_replicas=0, max_replicas=3) == 0


@pytest.mark.parametrize("backlog", [-1, float("nan")])
def test_a_nonsense_backlog_is_an_error(backlog):
    with pytest.raises(ValueError, match="non-negative"):
        replicas_for_backlog(backlog, **BOUNDS)


def _decide(backlog, current, *, now=1000.0, last_change=None, window=60.0):
    return decide(
        backlog=backlog,
        current=current,
        now=now,
        last_change=last_change,
        stabilization_seconds=window,
        **BOUNDS,
    )


def test_scale_up_is_immediate_even_right_after_a_change():
    decision = _decide(450, 1, last_change=999.0)
    assert (decision.replicas, decision.changed) == (5, True)
    assert "scaling up" in decision.reason


def test_scale_down_waits_for_the_stabilization_window():
    held = _decide(0, 4, now=1030.0, last_change=1000.0)
    assert (held.replicas, held.changed) == (4, False)
    assert "30s more" in held.reason
    released = _decide(0, 4, now=1061.0, last_change=1000.0)
    assert (released.replicas, released.changed) == (1, True)


def test_unknown_backlog_keeps_the_current_count_clamped_to_bounds():
    assert _decide(None, 3).replicas == 3
    assert _decide(None, 3).changed is False
    assert _decide(None, 9).replicas == 5
    assert _decide(None, 9).changed is True


def test_steady_backlog_changes_nothing():
    decision = _decide(300, 3)
    assert (decision.replicas, decision.changed) == (3, False)
