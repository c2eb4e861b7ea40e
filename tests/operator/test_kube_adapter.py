"""The operator's API adapter (sentiment_operator.kube) against the real kube-apiserver: it logs in the way
kopf does, logs in again when a token stops working, and turns every failure into an ApiError that carries
the server's own explanation."""

from __future__ import annotations

import asyncio
import dataclasses

import kopf
import pytest
from kubernetes_asyncio import client
from sentiment_operator import kube

from .conftest import Cluster
from .helpers import free_port


def _operator_login(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> kopf.ConnectionInfo:
    monkeypatch.setenv("KUBECONFIG", str(cluster.operator_kubeconfig))
    return kube.login(kopf.OperatorSettings())


class Logins:
    """A login function handing out ``infos`` in turn (the last one from then on), counting its calls."""

    def __init__(self, *infos: kopf.ConnectionInfo) -> None:
        self.infos, self.calls = infos, 0

    def __call__(self) -> kopf.ConnectionInfo:
        self.calls += 1
        return self.infos[min(self.calls, len(self.infos)) - 1]


async def test_reads_what_the_operators_service_account_may_read(cluster, api, namespace, monkeypatch):
    await client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="mongo"), string_data={"uri": "mongodb://x"}),
    )
    info = _operator_login(cluster, monkeypatch)
    adapter = kube.KubeApi(lambda: info)
    try:
        assert await kube.get(adapter, "v1", "Secret", namespace, "absent") is None  # 404 -> None
        secret = await kube.get(adapter, "v1", "Secret", namespace, "mongo")
        assert secret is not None and set(secret["data"]) == {"uri"}
    finally:
        await adapter.close()


async def test_a_rejected_token_means_one_fresh_login_then_the_call_goes_through(
    cluster, namespace, monkeypatch
):
    good = _operator_login(cluster, monkeypatch)
    login = Logins(dataclasses.replace(good, token="expired-or-rotated"), good)
    api = kube.KubeApi(login)
    try:
        assert await kube.get(api, "v1", "Secret", namespace, "absent") is None
        assert login.calls == 2  # 401 with the stale token, then a new login
    finally:
        await api.close()


async def test_calls_in_flight_when_the_token_is_refused_all_go_through_with_one_new_login(
    cluster, namespace, monkeypatch
):
    good = _operator_login(cluster, monkeypatch)
    login = Logins(dataclasses.replace(good, token="expired-or-rotated"), good)
    api = kube.KubeApi(login)
    try:
        reads = (kube.get(api, "v1", "Secret", namespace, f"absent-{i}") for i in range(20))
        found = await asyncio.gather(*reads)
        assert found == [None] * 20
        assert login.calls == 2  # every refused call retried on the one fresh session
    finally:
        await api.close()


async def test_a_token_that_stays_invalid_is_an_error_not_a_loop(cluster, namespace, monkeypatch):
    login = Logins(dataclasses.replace(_operator_login(cluster, monkeypatch), token="never-valid"))
    api = kube.KubeApi(login)
    try:
        with pytest.raises(kube.ApiError) as caught:
            await kube.get(api, "v1", "Secret", namespace, "absent")
        assert caught.value.status == 401 and login.calls == 2
    finally:
        await api.close()


async def test_the_servers_message_travels_with_the_error(cluster, namespace, monkeypatch):
    api = kube.KubeApi(lambda: _operator_login(cluster, monkeypatch))
    invalid = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "Not_A_Valid_Name", "namespace": namespace},
        "data": {"k": "v"},
    }
    try:
        with pytest.raises(kube.ApiError) as caught:
            await kube.apply(api, invalid)
    finally:
        await api.close()
    assert caught.value.status == 422
    assert "Not_A_Valid_Name" in str(caught.value) and "RFC 1123" in caught.value.message


async def test_forbidden_is_reported_with_the_rbac_reason(cluster, namespace, monkeypatch):
    api = kube.KubeApi(lambda: _operator_login(cluster, monkeypatch))
    try:
        with pytest.raises(kube.ApiError) as caught:
            await api.request("GET", "/api/v1/nodes")  # the operator's ClusterRole grants no nodes access
    finally:
        await api.close()
    assert caught.value.status == 403
    assert 'cannot list resource "nodes"' in caught.value.message


async def test_an_unreachable_server_is_an_api_error_with_status_zero(cluster, monkeypatch):
    info = _operator_login(cluster, monkeypatch)
    api = kube.KubeApi(lambda: dataclasses.replace(info, server=f"https://127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(kube.ApiError) as caught:
            await kube.get(api, "v1", "ConfigMap", "default", "x")
    finally:
        await api.close()
    assert caught.value.status == 0 and caught.value.reason == "Unreachable"
