"""The operator's ClusterRole is least privilege: the whole suite runs the operator with this ServiceAccount's
token (a missing verb fails those tests); here, what it must NOT be able to do."""

from __future__ import annotations

import subprocess

import pytest

from .helpers import OPERATOR_NS, OPERATOR_SA

SA = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"


def _can(cluster, *args: str) -> bool:
    result = subprocess.run(
        ["kubectl", f"--kubeconfig={cluster.admin_kubeconfig}", "auth", "can-i", f"--as={SA}", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout.strip() == "yes"


@pytest.mark.parametrize(
    "request_",
    [
        ("patch", "deployments.apps"),
        ("create", "deployments.apps"),
        ("watch", "configmaps"),
        ("get", "secrets"),
        ("patch", "sentimentpipelines.sentiment.io/status"),
        ("create", "events"),
        ("delete", "deployments.apps"),  # the HTTP poller, when source.kind leaves http
    ],
)
def test_the_operator_may_do_what_it_uses(cluster, request_):
    assert _can(cluster, *request_, "-n", "any-namespace")


@pytest.mark.parametrize(
    "request_",
    [
        ("delete", "configmaps"),
        ("delete", "services"),
        ("list", "secrets"),
        ("watch", "secrets"),
        ("create", "pods"),
        ("delete", "sentimentpipelines.sentiment.io"),
        ("create", "sentimentpipelines.sentiment.io"),
        ("update", "deployments.apps"),
        ("get", "nodes"),
        ("create", "roles.rbac.authorization.k8s.io"),
    ],
)
def test_the_operator_may_not_do_what_it_does_not_use(cluster, request_):
    assert not _can(cluster, *request_, "-n", "any-namespace")
