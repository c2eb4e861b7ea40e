"""The one level-triggered path: validated spec -> children -> server-side apply -> read back -> status.

Create, update, resume, the resync timer and child events all call :func:`reconcile`. It is idempotent:
applying an unchanged desired state is a no-op on the server, so running it twice (two triggers, an
operator restart) never duplicates or flaps anything. Runs for one pipeline are serialized; a child
event arriving while one runs only marks the pipeline dirty, and the running pass goes round once more.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

import kopf
from sentiment_workers.http_source.settings import HTTP_STORE

from . import autoscaling, backlog, builders, kube, metrics
from . import status as st
from .settings import OperatorConfig
from .spec import CREDENTIALS, InvalidSpec, PipelineSpec, SourceKind, State, parse_spec

SERVICE_MONITOR_API = ("monitoring.coreos.com/v1", "servicemonitors")


@dataclass
class _Serial:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    dirty: bool = False


@dataclass
class Operator:
    """What the handlers share (kept in kopf's memo): the API client, settings and per-pipeline state.
    Everything kept about a pipeline goes with it (:meth:`forget`)."""

    api: kube.KubeApi
    settings: OperatorConfig
    discovery: kube.ApiDiscovery = field(default_factory=kube.ApiDiscovery)
    # uid -> {"<kind>/<name>": metadata.generation of that child as last applied}.
    generations: dict[str, dict[str, int]] = field(default_factory=dict)
    phases: dict[tuple[str, str], str] = field(default_factory=dict)
    serials: dict[str, _Serial] = field(default_factory=dict)
    # uid -> ((namespace, name), monotonic time of its last watch event): what the resync loop visits.
    pipelines: dict[str, tuple[tuple[str, str], float]] = field(default_factory=dict)
    # uid -> {store: [pods that cannot reach it]}, from the last resync's scrape of the workers.
    unreachable: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # uid -> {store: [pods whose credentials it refuses]}, from the same scrape.
    refused: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # uid -> {store: [pods whose requests it rejects]} (the HTTP source), from the same scrape.
    rejected: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    async def exclusive(self, uid: str, run: Callable[[], Awaitable[Any]], *, wait: bool = True) -> None:
        """Run ``run`` alone for one pipeline. With ``wait=False`` a busy pipeline is only marked dirty."""
        serial = self.serials.setdefault(uid, _Serial())
        if not wait and serial.lock.locked():
            serial.dirty = True
            return
        async with serial.lock:
            serial.dirty = False
            await run()
            while serial.dirty:
                serial.dirty = False
                await run()

    def forget(self, uid: str, key: tuple[str, str]) -> None:
        self.serials.pop(uid, None)
        self.generations.pop(uid, None)
        self.pipelines.pop(uid, None)
        self.unreachable.pop(uid, None)
        self.refused.pop(uid, None)
        self.rejected.pop(uid, None)
        self.phases.pop(key, None)
        self._count_phases()

    def record_phase(self, key: tuple[str, str], phase: str) -> None:
        self.phases[key] = phase
        self._count_phases()

    def _count_phases(self) -> None:
        for phase in (st.PHASE_PROGRESSING, st.PHASE_RUNNING, st.PHASE_PAUSED, st.PHASE_DEGRADED):
            metrics.PIPELINES.labels(phase).set(sum(1 for p in self.phases.values() if p == phase))


def _event_body(body: Mapping[str, Any]) -> kopf.Body:
    """The CR as kopf's event poster wants it (only apiVersion, kind and metadata are read)."""
    return kopf.Body(cast(kopf.RawBody, dict(body)))


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


async def _check_secrets(
    op: Operator, namespace: str, spec: PipelineSpec
) -> tuple[list[st.Problem], dict[str, str]]:
    """Every referenced Secret must exist with the keys the workers read (values are never looked at): each
    required key, and one of the optional keys of a Secret read only for optional keys. Also returns each
    existing Secret's ``resourceVersion``: a changed Secret rolls the pods that read it."""
    problems = []
    versions: dict[str, str] = {}
    optional = spec.optional_keys()
    for name, keys in spec.secret_refs().items():
        secret = await kube.get(op.api, "v1", "Secret", namespace, name)
        if secret is not None:
            versions[name] = str((secret.get("metadata") or {}).get("resourceVersion") or "")
        if secret is None:
            problems.append(
                st.Problem(
                    "SecretNotFound",
                    f"Secret {name!r} not found in namespace {namespace} (keys {', '.join(keys)})",
                )
            )
            continue
        present = set((secret.get("data") or {}).keys()) | set((secret.get("stringData") or {}).keys())
        may_lack = optional.get(name, ())
        missing = [k for k in keys if k not in present and k not in may_lack]
        if missing:
            problems.append(
                st.Problem("SecretKeyMissing", f"Secret {name!r} lacks key(s) {', '.join(missing)}")
            )
        elif may_lack and set(may_lack) == set(keys) and not present.intersection(may_lack):
            # Every key read from it is optional (the MLflow credentials): one of them must be there.
            problems.append(
                st.Problem("SecretKeyMissing", f"Secret {name!r} has none of the keys {', '.join(may_lack)}")
            )
    return problems, versions


def backend_problem(settings: OperatorConfig, spec: PipelineSpec) -> st.Problem | None:
    """The default worker image must run the spec's model backend (the slim image: onnx-int8 only)."""
    available = [b.strip() for b in settings.worker_image_backends.split(",") if b.strip()]
    backend = spec.model.backend.value
    if spec.inference.image is not None or not available or backend in available:
        return None
    return st.Problem(
        "BackendUnavailable",
        f"model.backend {backend} does not run on the worker image {settings.worker_image} "
        f"(it runs {', '.join(available)}): set spec.model.backend to {available[0]}, or "
        "spec.inference.image to a torch worker image (<version>-torch, or -cuda for GPUs)",
    )


STORE_NAMES = {"kafka": "Kafka", "mongo": "MongoDB", "mysql": "MySQL"}


async def _scrape(
    op: Operator, body: Mapping[str, Any], spec: PipelineSpec, *, logger: Any
) -> backlog.Scrape | None:
    """What the workers export (backlog, stores' reachability), or None when paused (no workers)."""
    if spec.state is State.PAUSED:
        return None
    meta = body["metadata"]
    try:
        return await backlog.scrape_workers(
            op.api,
            meta["namespace"],
            builders.metrics_service_name(meta["name"]),
            backlog_metric=op.settings.backlog_metric,
            store_metric=op.settings.store_metric,
            error_metric=op.settings.store_error_metric,
            scrape_timeout=op.settings.backlog_scrape_timeout_seconds,
        )
    except kube.ApiError as exc:
        logger.warning(f"cannot read the workers' metrics: {exc}")
        return None


def store_problem(unreachable: Mapping[str, Sequence[str]]) -> st.Problem | None:
    """``StoreUnreachable`` naming each store and the worker pods that cannot reach it."""
    parts = [
        f"{STORE_NAMES.get(store, store)} unreachable from {', '.join(pods)}"
        for store, pods in sorted(unreachable.items())
        if store != HTTP_STORE
    ]
    if not parts:
        return None
    return st.Problem("StoreUnreachable", "; ".join(parts))


def store_secret(spec: PipelineSpec, store: str) -> str:
    """Where ``store``'s credentials come from, in words (from the table :data:`spec.CREDENTIALS`)."""
    keys: dict[tuple[str, str], list[str]] = {}
    for credential in CREDENTIALS:
        ref = spec.secret_ref(credential.ref)
        if credential.setting.startswith(f"{store}_") and ref is not None:
            keys.setdefault((ref.name, credential.ref), []).append(credential.key)
    if not keys:
        return "no Secret (plaintext Kafka)" if store == "kafka" else "no Secret"
    return "; ".join(
        f"Secret {name!r} (spec.{path}, key{'s' if len(k) > 1 else ''} {', '.join(k)})"
        for (name, path), k in keys.items()
    )


def auth_problem(refused: Mapping[str, Sequence[str]], spec: PipelineSpec) -> st.Problem | None:
    """``StoreAuthFailed`` naming each store that refuses the credentials, the Secret they come from and the
    worker pods it refuses. A changed Secret rolls those pods (its resourceVersion is in their template)."""
    parts = [
        f"{STORE_NAMES.get(store, store)} refused the credentials from {store_secret(spec, store)} "
        f"for {', '.join(pods)}"
        for store, pods in sorted(refused.items())
        if store != HTTP_STORE
    ]
    if not parts:
        return None
    return st.Problem(
        "StoreAuthFailed",
        "; ".join(parts) + ": fix the Secret; the workers retry and roll when it changes",
    )


def public_url(url: str) -> str:
    """``url`` without its query string, fragment or user info: what a status message may show."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def source_problems(
    spec: PipelineSpec,
    refused: Mapping[str, Sequence[str]],
    rejected: Mapping[str, Sequence[str]],
    unreachable: Mapping[str, Sequence[str]],
) -> list[st.Problem]:
    """What the poller says of the HTTP source's API (store ``http``): ``SourceRejected`` when the API refuses
    the poller's credentials (401/403) or rejects its requests (another 4xx, or a page the settings cannot
    read), ``SourceUnreachable`` when it cannot be reached (connection errors, timeouts, 5xx after retries).
    The URL is shown without its query string."""
    if spec.source.kind is not SourceKind.HTTP or spec.source.http is None:
        return []
    url = public_url(spec.source.http.url)
    problems = []
    if refused.get(HTTP_STORE):
        problems.append(
            st.Problem(
                "SourceRejected",
                f"the API {url} refused the poller's credentials (HTTP 401/403) for "
                f"{', '.join(refused[HTTP_STORE])}: fix the headers in {store_secret(spec, HTTP_STORE)}; "
                "the poller retries and rolls when the Secret changes",
            )
        )
    if rejected.get(HTTP_STORE):
        problems.append(
            st.Problem(
                "SourceRejected",
                f"the API {url} rejected the poller's requests (HTTP 4xx, or a page it cannot read) for "
                f"{', '.join(rejected[HTTP_STORE])}: check spec.source.http "
                "(url, method, paging, recordsPath)",
            )
        )
    if unreachable.get(HTTP_STORE):
        problems.append(
            st.Problem(
                "SourceUnreachable",
                f"the API {url} is unreachable from {', '.join(unreachable[HTTP_STORE])} "
                "(connection errors, timeouts or 5xx after retries); the poller keeps retrying",
            )
        )
    return problems


def removal_reason(spec: PipelineSpec, component: str) -> str:
    """Why a worker Deployment is not part of ``spec`` (the event's words)."""
    if component == builders.POLLER:
        return f"source.kind is {spec.source.kind.value}"
    return f"mode is {spec.mode.value}"


async def _remove_worker(
    op: Operator,
    body: Mapping[str, Any],
    spec: PipelineSpec,
    component: str,
    generations: dict[str, int],
    *,
    first_pass: bool,
) -> st.Problem | None:
    """A worker Deployment the spec no longer runs goes (only ours: by its labels and owner): the poller of a
    source that is no longer http, the consumer in fused mode. The API is asked only when one may exist: this
    operator applied one, the status counts one, or this is the operator's first pass over the pipeline (a
    restart)."""
    meta = body["metadata"]
    namespace, pipeline, uid = meta["namespace"], meta["name"], str(meta["uid"])
    name = builders.deployment_name(pipeline, component)
    key = f"Deployment/{name}"
    previous = body.get("status") or {}
    if not (first_pass or key in generations or f"{component}DesiredReplicas" in previous):
        return None
    labels = {builders.LABEL_PIPELINE: pipeline, builders.LABEL_COMPONENT: component}
    try:
        for found in await kube.list_labelled(op.api, "apps/v1", "Deployment", namespace, labels):
            refs = (found.get("metadata") or {}).get("ownerReferences") or []
            if not any(ref.get("controller") and ref.get("uid") == uid for ref in refs):
                continue
            stale = found["metadata"]["name"]
            await kube.delete(op.api, "apps/v1", "Deployment", namespace, stale, found["metadata"]["uid"])
            kopf.event(
                _event_body(body),
                type="Normal",
                reason="Removed",
                message=f"Removed Deployment {stale}: {removal_reason(spec, component)}",
            )
    except kube.ApiError as exc:
        return st.Problem("ApplyFailed", f"cannot remove Deployment {name}: {exc}")
    generations.pop(key, None)
    return None


async def _autoscale(
    body: Mapping[str, Any], spec: PipelineSpec, scrape: backlog.Scrape | None, *, read: bool
) -> tuple[int | None, dict[str, Any] | None]:
    """The inference replica count the autoscaler wants (None when autoscaling is off) and its status."""
    if not spec.autoscaling.enabled:
        return None, None
    a = spec.autoscaling
    previous = (body.get("status") or {}).get("autoscaling") or {}
    current = int(previous.get("desiredReplicas", a.min_replicas))
    if spec.state is State.PAUSED or not read:
        kept = autoscaling.within(a, current)
        return kept, {**previous, "desiredReplicas": kept}
    meta = body["metadata"]
    value = scrape.backlog() if scrape is not None else None
    metrics.BACKLOG.labels(meta["namespace"], meta["name"]).set(math.nan if value is None else value)
    now = time.time()
    decision = autoscaling.decide(
        backlog=value,
        current=current,
        min_replicas=a.min_replicas,
        max_replicas=a.max_replicas,
        target_per_replica=a.target_backlog_per_replica,
        now=now,
        last_change=_parse_time(previous.get("lastScaleTime")),
        stabilization_seconds=a.scale_down_stabilization_seconds,
    )
    state: dict[str, Any] = {
        "desiredReplicas": decision.replicas,
        "backlog": None if value is None else int(value),
        "reason": decision.reason,
        "lastScaleTime": previous.get("lastScaleTime"),
    }
    if decision.changed:
        state["lastScaleTime"] = st.now_rfc3339()
        kopf.event(
            _event_body(body),
            type="Normal",
            reason="Scaled",
            message=f"inference {current} -> {decision.replicas}: {decision.reason}",
        )
    return decision.replicas, state


async def reconcile(
    op: Operator, body: Mapping[str, Any], *, trigger: str, logger: Any, autoscale: bool = False
) -> dict[str, Any]:
    """Bring one pipeline's children to the desired state and write its status; returns the status."""
    started = time.perf_counter()
    try:
        result = await _reconcile(op, body, autoscale=autoscale, logger=logger)
    except Exception as exc:
        metrics.RECONCILES.labels(trigger, "error").inc()
        metrics.RECONCILE_ERRORS.labels(type(exc).__name__).inc()
        raise
    finally:
        metrics.RECONCILE_DURATION.observe(time.perf_counter() - started)
    metrics.RECONCILES.labels(trigger, result["phase"].lower()).inc()
    return result


async def _reconcile(
    op: Operator, body: Mapping[str, Any], *, autoscale: bool, logger: Any
) -> dict[str, Any]:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    key = (namespace, name)
    previous = body.get("status") or {}
    event_body = _event_body(body)

    try:
        spec = parse_spec(body.get("spec") or {})
    except InvalidSpec as exc:
        observed = st.Observed(
            generation=int(meta.get("generation") or 0),
            paused=False,
            model=None,
            problems=[st.Problem("InvalidSpec", str(exc))],
        )
        return await _write_status(op, body, observed, previous, logger=logger)

    owner = builders.Owner.from_body(body)
    problems, secret_versions = await _check_secrets(op, namespace, spec)
    unavailable = backend_problem(op.settings, spec)
    if unavailable is not None:
        problems.append(unavailable)
    uid = str(meta["uid"])
    scrape = await _scrape(op, body, spec, logger=logger) if autoscale else None
    if spec.state is State.PAUSED:
        op.unreachable.pop(uid, None)
        op.refused.pop(uid, None)
        op.rejected.pop(uid, None)
    elif scrape is not None:
        op.unreachable[uid] = scrape.unreachable()
        op.refused[uid] = scrape.refused()
        op.rejected[uid] = scrape.rejected()
    refused = auth_problem(op.refused.get(uid, {}), spec)
    if refused is not None:
        problems.append(refused)
    source = source_problems(
        spec, op.refused.get(uid, {}), op.rejected.get(uid, {}), op.unreachable.get(uid, {})
    )
    problems.extend(p for p in source if p.reason == "SourceRejected")
    unreachable = store_problem(op.unreachable.get(uid, {}))
    if unreachable is not None:
        problems.append(unreachable)
    problems.extend(p for p in source if p.reason == "SourceUnreachable")
    autoscaled, autoscale_state = await _autoscale(body, spec, scrape, read=autoscale)
    with_monitor = await op.discovery.serves(op.api, *SERVICE_MONITOR_API)
    children = builders.build_children(
        spec,
        owner,
        default_image=op.settings.worker_image,
        default_pull_policy=op.settings.worker_image_pull_policy,
        autoscaled=autoscaled,
        service_monitor=with_monitor,
        secret_versions=secret_versions,
    )

    first_pass = uid not in op.generations
    generations = op.generations.setdefault(uid, {})
    rollouts: dict[str, st.Rollout] = {}
    for child in children:
        kind, child_name = child["kind"], child["metadata"]["name"]
        try:
            stored, created = await kube.apply(op.api, child)
        except kube.ApiError as exc:
            problems.append(st.Problem("ApplyFailed", f"{kind} {child_name}: {exc}"))
            continue
        metrics.CHILDREN_APPLIED.labels(kind).inc()
        gen_key = f"{kind}/{child_name}"
        if created:
            verb = "Restored" if gen_key in generations else "Created"
            kopf.event(event_body, type="Normal", reason=verb, message=f"{verb} {kind} {child_name}")
        generation = int(stored["metadata"].get("generation") or 0)
        seen = generations.get(gen_key)
        if not created and kind == "Deployment" and seen is not None and generation > seen:
            kopf.event(
                event_body,
                type="Normal",
                reason="Updated",
                message=f"Updated {kind} {child_name} (generation {generation})",
            )
        generations[gen_key] = generation
        if kind == "Deployment":
            component = child["metadata"]["labels"][builders.LABEL_COMPONENT]
            rollouts[component] = st.rollout(child_name, child["spec"]["replicas"], stored)

    running = builders.worker_components(spec)
    for component in builders.WORKER_COMPONENTS:
        if component in running:
            continue
        removal = await _remove_worker(op, body, spec, component, generations, first_pass=first_pass)
        if removal is not None:
            problems.append(removal)

    paused = spec.state is State.PAUSED
    observed = st.Observed(
        generation=int(meta.get("generation") or 0),
        paused=paused,
        model=spec.model.name,
        rollouts=rollouts,
        problems=problems,
        autoscaling=autoscale_state,
    )
    if autoscaled is not None:
        metrics.INFERENCE_REPLICAS.labels(namespace, name).set(autoscaled)
    if paused != (previous.get("phase") == st.PHASE_PAUSED) and previous:
        kopf.event(
            event_body,
            type="Normal",
            reason="Paused" if paused else "Resumed",
            message=f"state is {spec.state.value}",
        )
    status = await _write_status(op, body, observed, previous, logger=logger)
    op.record_phase(key, status["phase"])
    return status


async def _write_status(
    op: Operator, body: Mapping[str, Any], observed: st.Observed, previous: Mapping[str, Any], *, logger: Any
) -> dict[str, Any]:
    meta = body["metadata"]
    status = st.derive(observed, previous)
    if status["phase"] != previous.get("phase"):
        degraded = st.condition(status, st.DEGRADED) or {}
        if status["phase"] == st.PHASE_DEGRADED:
            kopf.event(
                _event_body(body),
                type="Warning",
                reason=str(degraded.get("reason")),
                message=str(degraded.get("message")),
            )
        else:
            kopf.event(
                _event_body(body), type="Normal", reason="Phase", message=f"phase is {status['phase']}"
            )
        logger.info(f"phase {previous.get('phase')} -> {status['phase']}")
    if status != previous:  # rewritten whole: what is no longer true (a block, a count) goes with it
        await kube.replace_pipeline_status(op.api, meta["namespace"], meta["name"], status)
    return status
