"""The operator's one adapter to the Kubernetes API: raw JSON over aiohttp, with kopf's own credentials.

Children are written with server-side apply (field manager ``sentiment-operator``, ``force``): the same call
creates a missing child, repairs a drifted one and is a no-op when nothing changed. Reads return plain dicts,
or ``None`` for a 404. Every verb used here is listed in ``k8s-manifests/rbac/operator-rbac.yaml``.

Why not a generated client: the operator needs a handful of REST calls on plain dicts, and kopf already
brings aiohttp and the credential discovery (:func:`kopf.login_with_service_account`,
:func:`kopf.login_with_kubeconfig`, whose :class:`kopf.ConnectionInfo` builds the headers and the TLS
context). kopf also imports ``kubernetes_asyncio.client`` (about 700 model classes, ~37 MiB resident) merely
because it is installed; leaving it out of the operator image keeps the operator well under its memory goal.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import kopf

from . import FIELD_MANAGER, GROUP, PLURAL, VERSION

_COLLECTIONS = {
    ("v1", "ConfigMap"): "/api/v1/namespaces/{namespace}/configmaps",
    ("v1", "Service"): "/api/v1/namespaces/{namespace}/services",
    ("v1", "Secret"): "/api/v1/namespaces/{namespace}/secrets",
    ("v1", "Endpoints"): "/api/v1/namespaces/{namespace}/endpoints",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{namespace}/deployments",
    (
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
    ): "/apis/monitoring.coreos.com/v1/namespaces/{namespace}/servicemonitors",
    (f"{GROUP}/{VERSION}", "SentimentPipeline"): f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}",
}
_JSON = "application/json"
REQUEST_TIMEOUT_S = 30.0


class ApiError(Exception):
    """A failed API call: HTTP status (0: server unreachable), reason and the server's own message."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        self.status, self.reason, self.message = status, reason, message
        super().__init__(f"{status} {reason}" + (f": {message}" if message else ""))


def login(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """In a pod: the ServiceAccount; elsewhere: ``$KUBECONFIG`` (or ~/.kube/config), as kopf logs in."""
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no ServiceAccount token and no kubeconfig found")
    return info


class KubeApi:
    """An aiohttp session to the API server. On a 401 it logs in again once (a rotated ServiceAccount token)
    and retries the call."""

    def __init__(self, login: Callable[[], kopf.ConnectionInfo], *, max_connections: int = 16) -> None:
        self._login = login
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._server = ""
        self._retired: set[aiohttp.ClientSession] = set()
        self._closers: set[asyncio.Task[None]] = set()

    def _open(self) -> tuple[aiohttp.ClientSession, str]:
        """The current session and its server URL, logging in first when there is none."""
        if self._session is None or self._session.closed:
            info = self._login()
            self._server = info.server.rstrip("/")
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=info.as_ssl_context()),
                headers={**info.as_http_headers(), "User-Agent": FIELD_MANAGER},
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            )
        return self._session, self._server

    def _retire(self, session: aiohttp.ClientSession) -> None:
        """Stop handing out ``session`` (the server refused its credentials). Calls still running on it
        finish (or time out) first; then it is closed."""
        if self._session is not session:
            return  # another call already retired it and logged in again
        self._session = None
        self._retired.add(session)

        async def close_later() -> None:
            await asyncio.sleep(REQUEST_TIMEOUT_S)
            self._retired.discard(session)
            await session.close()

        task = asyncio.create_task(close_later())
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = _JSON,
    ) -> tuple[dict[str, Any], int]:
        """One call; returns the decoded JSON body and the HTTP status, or raises :class:`ApiError`."""
        data = None if body is None else json.dumps(body)
        headers = {"Accept": _JSON, "Content-Type": content_type}
        for attempt in (1, 2):
            session, server = self._open()
            try:
                async with session.request(
                    method, server + path, params=query or [], data=data, headers=headers
                ) as response:
                    if response.status == 401 and attempt == 1:
                        self._retire(session)  # credentials expired or rotated: log in afresh and retry
                        continue
                    text = await response.text()
                    if response.status >= 400:
                        raise ApiError(response.status, response.reason or "", _status_message(text))
                    return (json.loads(text) if text else {}), response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ApiError(0, "Unreachable", f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def close(self) -> None:
        for task in list(self._closers):
            task.cancel()
        sessions = [*self._retired, *([self._session] if self._session is not None else [])]
        self._session, self._retired = None, set()
        for session in sessions:
            await session.close()


def _status_message(text: str) -> str:
    """The API server's own explanation of a failure (its Status object's message), if any."""
    try:
        message = json.loads(text).get("message")
    except (TypeError, ValueError, AttributeError):
        message = None
    return str(message) if message else text[:300]


def connect(settings: kopf.OperatorSettings, *, max_connections: int = 16) -> KubeApi:
    """A client logged in the way kopf logs in (fails early when it cannot)."""
    api = KubeApi(lambda: login(settings), max_connections=max_connections)
    api._open()
    return api


def _path(
    api_version: str, kind: str, namespace: str, name: str | None = None, sub: str | None = None
) -> str:
    try:
        path = _COLLECTIONS[(api_version, kind)].format(namespace=namespace)
    except KeyError:
        raise ValueError(f"the operator does not manage {api_version} {kind}") from None
    if name is not None:
        path += f"/{name}"
    if sub is not None:
        path += f"/{sub}"
    return path


async def apply(api: KubeApi, manifest: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Server-side apply one child; returns the object as stored and whether it was created."""
    meta = manifest["metadata"]
    path = _path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
    stored, code = await api.request(
        "PATCH",
        path,
        body=manifest,
        query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        content_type="application/apply-patch+yaml",
    )
    return stored, code == 201


async def get(api: KubeApi, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """One object, or None when it does not exist."""
    try:
        found, _ = await api.request("GET", _path(api_version, kind, namespace, name))
        return found
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


async def list_labelled(
    api: KubeApi, api_version: str, kind: str, namespace: str, labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The objects of ``kind`` in ``namespace`` carrying every one of ``labels``."""
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    path = _path(api_version, kind, namespace)
    found, _ = await api.request("GET", path, query=[("labelSelector", selector)])
    return list(found.get("items") or [])


async def delete(api: KubeApi, api_version: str, kind: str, namespace: str, name: str, uid: str) -> None:
    """Delete one object, only if it is still the one with ``uid`` (a precondition); gone already is fine."""
    body = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "preconditions": {"uid": uid},
        "propagationPolicy": "Background",
    }
    try:
        await api.request("DELETE", _path(api_version, kind, namespace, name), body=body)
    except ApiError as exc:
        if exc.status != 404:
            raise


async def replace_pipeline_status(api: KubeApi, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Replace the CR's status subresource whole (a JSON patch ``add /status``: no resourceVersion to race on,
    and a key the new status lacks is removed, where a merge patch would keep it)."""
    path = _path(f"{GROUP}/{VERSION}", "SentimentPipeline", namespace, name, "status")
    patch = [{"op": "add", "path": "/status", "value": status}]
    try:
        await api.request("PATCH", path, body=patch, content_type="application/json-patch+json")
    except ApiError as exc:
        if exc.status != 404:  # deleted meanwhile: nothing to report on
            raise


class ApiDiscovery:
    """Whether an optional API (the ServiceMonitor CRD) is served; cached for ``ttl`` seconds."""

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, bool]] = {}

    async def serves(self, api: KubeApi, group_version: str, plural: str) -> bool:
        key = (group_version, plural)
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        try:
            found, _ = await api.request("GET", f"/apis/{group_version}")
            served = any(r.get("name") == plural for r in found.get("resources", []))
        except ApiError as exc:
            if exc.status not in (403, 404):
                raise
            served = False
        self._cache[key] = (time.monotonic(), served)
        return served
