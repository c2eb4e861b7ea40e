"""Read what the workers export, for the autoscaler and the status: the backlog and the stores' reachability.

The operator scrapes the addresses of the pipeline's metrics Service (from its Endpoints, no DNS or
kube-proxy needed), once per resync pass, concurrently and bounded by a timeout, and reads two gauges of the
contract in :mod:`sentiment_workers.config`:

- the backlog (default ``sentiment_inference_backlog_messages``): staged messages not yet classified. Every
  inference pod reports the same shared backlog; the operator reads the *ready* pods, ignores pods that do
  not export it (consumers) and takes the largest value. No answer at all -> ``None`` (the autoscaler then
  keeps the current replica count);
- ``sentiment_store_up{store}``: whether each worker reaches Kafka, MongoDB and MySQL. Read from *every* pod,
  ready or not: a worker that cannot reach a store fails its readiness probe (``/readyz``), so the pods that
  matter here are the not-ready ones;
- ``sentiment_store_error{store,kind}``: why a store is down; ``kind="auth"`` means the store refused the
  worker's credentials or rights (a wrong Secret), which the status reports apart from an outage;
  ``kind="rejected"`` (the HTTP source's poller, store ``http``): the API rejected its requests.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from sentiment_workers.config import AUTH, REJECTED, STORE_ERROR_METRIC, UNREACHABLE

from . import kube


def backlog_from_exposition(text: str, metric: str) -> float | None:
    """The largest sample of ``metric`` in a Prometheus text exposition, or None if absent."""
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == metric and not math.isnan(sample.value)
    ]
    return max(values) if values else None


def stores_from_exposition(text: str, metric: str) -> dict[str, bool]:
    """``{store: reachable}`` from the samples of ``metric`` (label ``store``) in an exposition."""
    return {
        sample.labels["store"]: sample.value >= 1
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == metric and "store" in sample.labels and not math.isnan(sample.value)
    }


def faults_from_exposition(text: str, metric: str, kind: str) -> set[str]:
    """Stores whose ``metric`` sample with label ``kind`` is 1."""
    return {
        sample.labels["store"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == metric
        and "store" in sample.labels
        and sample.labels.get("kind") == kind
        and sample.value >= 1
    }


def refused_from_exposition(text: str, metric: str) -> set[str]:
    """Stores whose ``metric`` sample with ``kind="auth"`` is 1: they refused the credentials."""
    return faults_from_exposition(text, metric, AUTH)


def combine(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


@dataclass(frozen=True)
class Target:
    """One worker pod behind the metrics Service."""

    address: str
    pod: str
    ready: bool


def endpoint_pods(endpoints: Mapping[str, Any] | None, port_name: str = "metrics") -> list[Target]:
    """Every address of an Endpoints object with the named port, ready or not, with its pod's name."""
    targets: list[Target] = []
    for subset in (endpoints or {}).get("subsets") or []:
        ports = [p["port"] for p in subset.get("ports") or [] if p.get("name") == port_name]
        if not ports:
            continue
        for key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for address in subset.get(key) or []:
                host = address["ip"]
                host = f"[{host}]" if ":" in host else host
                pod = (address.get("targetRef") or {}).get("name") or address["ip"]
                targets.append(Target(f"{host}:{ports[0]}", str(pod), ready))
    return targets


def endpoint_targets(endpoints: dict | None, port_name: str = "metrics") -> list[str]:
    """``host:port`` of every ready address of an Endpoints object."""
    return [t.address for t in endpoint_pods(endpoints, port_name) if t.ready]


@dataclass(frozen=True)
class WorkerReport:
    """What one pod answered (``answered`` False: no answer, nothing known)."""

    target: Target
    answered: bool
    backlog: float | None = None
    stores: dict[str, bool] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    """Stores that are down because they refused the credentials (a subset of the stores not up)."""
    rejected: set[str] = field(default_factory=set)
    """Stores that are down because they rejected the requests (the HTTP source: a 4xx other than 401/403)."""


@dataclass(frozen=True)
class Scrape:
    """One pass over a pipeline's worker pods."""

    reports: list[WorkerReport]

    def backlog(self) -> float | None:
        """The backlog the ready pods report (None when none did)."""
        return combine(r.backlog for r in self.reports if r.target.ready)

    def unreachable(self) -> dict[str, list[str]]:
        """``{store: [pods that cannot reach it]}``, stores and pods sorted (refusals, rejections aside)."""
        return self._down(UNREACHABLE)

    def refused(self) -> dict[str, list[str]]:
        """``{store: [pods whose credentials it refuses]}``, stores and pods sorted."""
        return self._down(AUTH)

    def rejected(self) -> dict[str, list[str]]:
        """``{store: [pods whose requests it rejects]}``, stores and pods sorted."""
        return self._down(REJECTED)

    def _down(self, kind: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for report in self.reports:
            for store, up in report.stores.items():
                if not up and _fault(report, store) == kind:
                    found.setdefault(store, []).append(report.target.pod)
        return {store: sorted(found[store]) for store in sorted(found)}


def _fault(report: WorkerReport, store: str) -> str:
    if store in report.refused:
        return AUTH
    if store in report.rejected:
        return REJECTED
    return UNREACHABLE


async def _scrape(
    session: aiohttp.ClientSession, target: Target, backlog_metric: str, store_metric: str, error_metric: str
) -> WorkerReport:
    try:
        async with session.get(f"http://{target.address}/metrics") as response:
            if response.status != 200:
                return WorkerReport(target, answered=False)
            text = await response.text()
        return WorkerReport(
            target,
            answered=True,
            backlog=backlog_from_exposition(text, backlog_metric),
            stores=stores_from_exposition(text, store_metric),
            refused=refused_from_exposition(text, error_metric),
            rejected=faults_from_exposition(text, error_metric, REJECTED),
        )
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return WorkerReport(target, answered=False)


async def scrape_workers(
    api: kube.KubeApi,
    namespace: str,
    service: str,
    *,
    backlog_metric: str,
    store_metric: str,
    scrape_timeout: float,
    error_metric: str = STORE_ERROR_METRIC,
) -> Scrape:
    """Scrape every pod behind the pipeline's metrics Service, ready or not."""
    targets = endpoint_pods(await kube.get(api, "v1", "Endpoints", namespace, service))
    if not targets:
        return Scrape([])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=scrape_timeout)) as session:
        reports: Sequence[WorkerReport] = await asyncio.gather(
            *(_scrape(session, t, backlog_metric, store_metric, error_metric) for t in targets)
        )
    return Scrape(list(reports))
