"""Thin kopf handlers: every trigger funnels into :func:`sentiment_operator.reconcile.reconcile`.

- create / update / resume of a SentimentPipeline -> reconcile now;
- a resync loop (``SENTIMENT_OPERATOR_RESYNC_SECONDS``) over every pipeline the watch has shown -> drift
  repair, status refresh, store reachability and autoscaling;
- events of the children (Deployments, ConfigMaps, Services labelled as ours) -> reconcile the owner, so a
  deleted or edited child is restored and the status follows the Deployments' status within a second.

No finalizer: the children carry owner references, so the garbage collector removes them with the CR, and
nothing has to run at deletion. (kopf puts its finalizer on every object that has a timer or daemon, or a
non-optional delete handler; the resync is therefore the operator's own loop, not a ``kopf.timer``. With a
finalizer, ``helm uninstall``, which deletes the CRs and the operator together, left the CRs stuck with a
deletionTimestamp and their workers running.) A finalizer left by an older version is released by kopf.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from . import FIELD_MANAGER, GROUP, KIND, PLURAL, VERSION, kube, metrics
from .builders import LABEL_MANAGED_BY
from .reconcile import Operator, reconcile
from .settings import OperatorConfig

RESOURCE = (GROUP, VERSION, PLURAL)
CHILD_LABELS = {LABEL_MANAGED_BY: FIELD_MANAGER}
log = logging.getLogger("sentiment_operator.resync")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    config = OperatorConfig()
    # kopf's own bookkeeping lives in annotations under our group: the status schema stays ours alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.posting.level = logging.WARNING  # events: our explicit ones, plus kopf's warnings and errors
    settings.peering.standalone = True  # one replica (Deployment strategy Recreate)
    # No namespace/CRD scanning: the watched resources are discovered once at start, so the operator
    # needs no cluster-wide read access to namespaces or CRDs (least privilege).
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    # A bounded connection pool: a burst (a restart over hundreds of pipelines) queues on a few TLS
    # connections instead of opening one per pipeline, each holding ~128 KiB of buffers.
    api = kube.connect(settings, max_connections=config.api_connections)
    memo.operator = Operator(api=api, settings=config)
    metrics.serve(config.metrics_port)
    logger.info(f"operator ready: worker image {config.worker_image}, resync every {config.resync_seconds}s")


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """kopf and the operator's own client log in the same way (see :func:`sentiment_operator.kube.login`)."""
    return kube.login(settings)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    resync: asyncio.Task[None] | None = getattr(memo, "resync", None)
    if resync is not None:
        resync.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await resync
    operator: Operator | None = getattr(memo, "operator", None)
    if operator is not None:
        await operator.api.close()


@kopf.on.probe(id="pipelines")
def probe_pipelines(memo: kopf.Memo, **_: Any) -> int:
    operator: Operator | None = getattr(memo, "operator", None)
    return len(operator.phases) if operator is not None else 0


async def _reconcile(
    operator: Operator,
    namespace: str,
    name: str,
    uid: str,
    *,
    body: Mapping[str, Any] | None,
    trigger: str,
    logger: Any,
    autoscale: bool = False,
    wait: bool = True,
) -> None:
    """Reconcile one pipeline alone. The first pass uses ``body`` (when given); a repeated pass (a child
    changed meanwhile) reads the CR afresh."""

    async def once() -> None:
        nonlocal body
        current, body = body, None
        if current is None:
            current = await kube.get(operator.api, f"{GROUP}/{VERSION}", KIND, namespace, name)
        if (
            current is None
            or current["metadata"].get("uid") != uid
            or current["metadata"].get("deletionTimestamp")
        ):
            return
        await reconcile(operator, current, trigger=trigger, logger=logger, autoscale=autoscale)

    try:
        await operator.exclusive(uid, once, wait=wait)
    except kube.ApiError as exc:
        raise kopf.TemporaryError(f"API error {exc}", delay=5) from exc


@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
@kopf.on.resume(*RESOURCE)
async def on_pipeline(reason: str, body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    """A pipeline created, changed, or found at the operator's start: reconcile it now."""
    meta = body.metadata
    await _reconcile(
        memo.operator,
        str(meta.namespace),
        str(meta.name),
        str(meta.uid),
        body=dict(body),
        trigger=str(reason),
        logger=logger,
    )


async def _resync_forever(operator: Operator) -> None:
    """Every ``resync_seconds``, reconcile (and autoscale) each pipeline unchanged for ``idle_seconds``."""
    settings = operator.settings
    while True:
        await asyncio.sleep(settings.resync_seconds)
        now = time.monotonic()
        due = [
            (uid, key)
            for uid, (key, changed) in list(operator.pipelines.items())
            if now - changed >= settings.idle_seconds
        ]
        await asyncio.gather(*(_resync_one(operator, uid, key) for uid, key in due))


async def _resync_one(operator: Operator, uid: str, key: tuple[str, str]) -> None:
    namespace, name = key
    try:
        await _reconcile(
            operator, namespace, name, uid, body=None, trigger="timer", logger=log, autoscale=True
        )
    except Exception as exc:  # one pipeline's failure must not stop the others' resync
        log.warning(
            f"resync of {namespace}/{name} failed: {exc}; retrying in {operator.settings.resync_seconds}s"
        )


@kopf.on.event(*RESOURCE)
async def on_pipeline_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Track the pipelines the watch shows (the resync loop's work list); forget deleted ones."""
    if getattr(memo, "resync", None) is None:
        # Started from a handler, not at startup: kopf.event() (the Scaled/StoreUnreachable events) needs the
        # posting context kopf sets up for its handlers, which the task inherits.
        memo.resync = asyncio.create_task(_resync_forever(memo.operator), name="resync")
    meta = body.metadata
    key = (str(meta.namespace), str(meta.name))
    if type == "DELETED" or meta.get("deletionTimestamp"):
        memo.operator.forget(str(meta.uid), key)
    else:
        memo.operator.pipelines[str(meta.uid)] = (key, time.monotonic())


def _owner(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if (
            ref.get("controller")
            and ref.get("kind") == KIND
            and ref.get("apiVersion") == f"{GROUP}/{VERSION}"
        ):
            return ref
    return None


@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
@kopf.on.event("v1", "configmaps", labels=CHILD_LABELS)
@kopf.on.event("v1", "services", labels=CHILD_LABELS)
async def on_child_event(type: str | None, body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    """A child changed or vanished: reconcile its owner (drift repair; the status follows the Deployments)."""
    # ADDED and the initial listing (None) are our own creations or already handled by resume.
    if type not in ("MODIFIED", "DELETED"):
        return
    owner = _owner(body)
    if owner is None:
        return
    try:
        await _reconcile(
            memo.operator,
            str(body.metadata.namespace),
            str(owner["name"]),
            str(owner["uid"]),
            body=None,
            trigger="child",
            logger=logger,
            wait=False,
        )
    except kopf.TemporaryError as exc:
        logger.warning(f"child event for {owner['name']}: {exc}; the resync timer will retry")
