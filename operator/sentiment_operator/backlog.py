"""Read the pending backlog the inference workers export, for the autoscaler.

The inference workers export a gauge (default ``sentiment_inference_backlog_messages``) of staged messages
not yet classified. Every inference pod reports the same shared backlog, so the operator scrapes the ready
addresses of the pipeline's metrics Service (from its Endpoints, no DNS or kube-proxy needed), ignores pods
that do not export the gauge (consumers) and takes the largest value. No answer at all -> ``None`` (the
autoscaler then keeps the current replica count). Scrapes are concurrent and bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

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


def combine(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def endpoint_targets(endpoints: dict | None, port_name: str = "metrics") -> list[str]:
    """``host:port`` of every ready address of an Endpoints object."""
    targets: list[str] = []
    for subset in (endpoints or {}).get("subsets") or []:
        ports = [p["port"] for p in subset.get("ports") or [] if p.get("name") == port_name]
        if not ports:
            continue
        for address in subset.get("addresses") or []:
            host = address["ip"]
            host = f"[{host}]" if ":" in host else host
            targets.append(f"{host}:{ports[0]}")
    return targets


async def _scrape(session: aiohttp.ClientSession, target: str, metric: str) -> float | None:
    try:
        async with session.get(f"http://{target}/metrics") as response:
            if response.status != 200:
                return None
            return backlog_from_exposition(await response.text(), metric)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


async def read_backlog(
    api: kube.KubeApi,
    namespace: str,
    service: str,
    *,
    metric: str,
    scrape_timeout: float,
) -> float | None:
    """The pipeline's backlog as its inference workers report it, or None when no worker answered."""
    targets = endpoint_targets(await kube.get(api, "v1", "Endpoints", namespace, service))
    if not targets:
        return None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=scrape_timeout)) as session:
        values = await asyncio.gather(*(_scrape(session, t, metric) for t in targets))
    return combine(values)
