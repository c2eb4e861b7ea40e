"""kubectl and helm for the e2e suite: the same commands a user types, with polling and a few JSON readers."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], *, timeout: float, interval: float = 2.0, what: str = "") -> T:
    """Poll ``check`` until it returns a truthy value without raising AssertionError; fail after
    ``timeout``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what or check.__name__} (last: {last!r})")
        time.sleep(interval)


@dataclass(frozen=True)
class Kube:
    kubeconfig: Path

    def run(self, *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None) -> str:
        result = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)} failed: {result.stderr.strip()}"
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))

    def try_json(self, *args: str) -> Any | None:
        """The object, or None when kubectl cannot get it (not found)."""
        out = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args, "-o", "json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else None

    def helm(self, helm: Path, *args: str, timeout: float = 900, check: bool = True) -> str:
        result = subprocess.run(
            [str(helm), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check:
            assert result.returncode == 0, (
                f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}\n{self.diagnose()}"
            )
        return result.stdout

    def diagnose(self) -> str:
        """What a failed step needs to be understood from a CI log alone, in a few lines: the nodes'
        conditions and taints (DiskPressure, ...), every pod that is not Ready with its containers' waiting or
        terminated reasons, the last Warning events, and the free space of the disk the kubeconfig (the node
        cluster's state and images) lives on."""
        lines = ["-- cluster at failure"]
        free = shutil.disk_usage(self.kubeconfig.parent)
        lines.append(f"disk: {free.free / 2**30:.1f} GiB free of {free.total / 2**30:.0f} GiB")
        for node in (self.try_json("get", "nodes") or {}).get("items", []):
            conditions = [
                f"{c['type']}={c['status']}"
                for c in node.get("status", {}).get("conditions", [])
                if (c["type"] == "Ready") != (c["status"] == "True")
            ]
            taints = [f"{t['key']}:{t['effect']}" for t in node.get("spec", {}).get("taints", [])]
            lines.append(
                f"node {node['metadata']['name']}: {' '.join(conditions) or 'Ready'}"
                + (f" taints {' '.join(taints)}" if taints else "")
            )
        for pod in (self.try_json("get", "pods", "--all-namespaces") or {}).get("items", []):
            status = pod.get("status", {})
            if status.get("phase") == "Succeeded" or condition(pod, "Ready").get("status") == "True":
                continue
            states = []
            for c in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
                for kind, state in c.get("state", {}).items():
                    if kind != "running":
                        message = state.get("message", "")[:160]
                        states.append(f"{c['name']} {state.get('reason', kind)}: {message}".rstrip(": "))
            meta = pod["metadata"]
            reason = status.get("reason") or condition(pod, "PodScheduled").get("message", "")
            lines.append(
                f"pod {meta['namespace']}/{meta['name']} {status.get('phase')} {reason[:160]}".rstrip()
                + "".join(f"\n    {s}" for s in states)
            )
        events = (
            self.try_json("get", "events", "--all-namespaces", "--field-selector", "type=Warning") or {}
        ).get("items", [])
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        for e in events[-15:]:
            obj = e.get("involvedObject", {})
            lines.append(
                f"event {obj.get('kind')}/{obj.get('name')} {e.get('reason')} x{e.get('count', 1)}: "
                f"{(e.get('message') or '')[:200]}"
            )
        return "\n".join(lines)


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The status condition of type ``kind`` (empty when absent)."""
    for c in obj.get("status", {}).get("conditions", []) or []:
        if c.get("type") == kind:
            return dict(c)
    return {}
