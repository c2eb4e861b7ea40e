"""kubectl and helm for the e2e suite: the same commands a user types, with polling and a few JSON readers."""

from __future__ import annotations

import json
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
            assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The status condition of type ``kind`` (empty when absent)."""
    for c in obj.get("status", {}).get("conditions", []) or []:
        if c.get("type") == kind:
            return dict(c)
    return {}
