"""The operator's kopf wiring: thin handlers, one function per kind of trigger (stacked decorators), and
per-pipeline bookkeeping that goes with the pipeline."""

from __future__ import annotations

from dataclasses import fields

import kopf
from sentiment_operator import handlers, kube
from sentiment_operator.reconcile import Operator
from sentiment_operator.settings import OperatorConfig


def test_create_update_and_resume_run_one_handler_and_child_events_another():
    registry = kopf.get_default_registry()
    changing = [h for h in registry._changing.get_all_handlers() if h.fn.__module__ == handlers.__name__]
    watching = [h for h in registry._watching.get_all_handlers() if h.fn.__module__ == handlers.__name__]

    assert {h.fn for h in changing} == {handlers.on_pipeline}
    # kopf.on.resume registers a handler without a reason, run for the objects found at start (initial).
    assert sorted((str(h.reason), h.initial is True) for h in changing) == [
        ("None", True),
        ("create", False),
        ("update", False),
    ]
    children = [h for h in watching if h.fn is handlers.on_child_event]
    assert sorted(h.selector.any_name for h in children if h.selector is not None) == [
        "configmaps",
        "deployments",
        "services",
    ]
    assert {h.fn for h in watching} == {handlers.on_child_event, handlers.on_pipeline_event}


def _never() -> kopf.ConnectionInfo:
    raise AssertionError("the bookkeeping never calls the API")


async def test_forgetting_a_pipeline_drops_everything_kept_about_it():
    """Every map the operator keeps per pipeline (by uid or by namespace/name) loses the deleted pipeline and
    keeps the others: nothing grows with the number of pipelines ever deleted."""
    op = Operator(api=kube.KubeApi(_never), settings=OperatorConfig())
    gone, kept = ("uid-gone", ("ns", "gone")), ("uid-kept", ("ns", "kept"))

    async def nothing() -> None:
        return None

    for uid, key in (gone, kept):
        await op.exclusive(uid, nothing)
        op.record_phase(key, "Running")
        op.pipelines[uid] = (key, 0.0)
        op.generations.setdefault(uid, {})[f"Deployment/{key[1]}-consumer"] = 1
        op.unreachable[uid] = {"mysql": ["pod"]}
        op.refused[uid] = {"mongo": ["pod"]}
        op.rejected[uid] = {"http": ["pod"]}

    op.forget(*gone)

    maps = {f.name: getattr(op, f.name) for f in fields(op) if isinstance(getattr(op, f.name), dict)}
    per_pipeline = {"generations", "phases", "serials", "pipelines", "unreachable", "refused", "rejected"}
    assert set(maps) >= per_pipeline
    for name, kept_map in maps.items():
        assert gone[0] not in kept_map and gone[1] not in kept_map, name
        assert kept[0] in kept_map or kept[1] in kept_map, name
