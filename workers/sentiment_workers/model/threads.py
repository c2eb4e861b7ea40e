"""How many CPU threads inference may use: the cgroup CPU quota, capped by the CPUs this process may use."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def cpu_quota(
    cpu_max: Path = CGROUP_V2_CPU_MAX,
    v1_quota: Path = CGROUP_V1_QUOTA,
    v1_period: Path = CGROUP_V1_PERIOD,
) -> float | None:
    """CPUs allowed by the cgroup quota (e.g. 1.5), or None when unlimited or unknown."""
    try:
        quota, _, period = cpu_max.read_text().strip().partition(" ")
        if quota == "max":
            return None
        return int(quota) / int(period or "100000")
    except (OSError, ValueError):
        pass
    try:
        v1 = int(v1_quota.read_text().strip())
        if v1 <= 0:
            return None
        return v1 / int(v1_period.read_text().strip())
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs this process may be scheduled on (affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def default_threads(cpu_max: Path = CGROUP_V2_CPU_MAX) -> int:
    """Threads for intra-op parallelism: ceil(quota) capped by the affinity mask, at least 1."""
    cpus = available_cpus()
    quota = cpu_quota(cpu_max)
    if quota is None:
        return cpus
    return max(1, min(cpus, math.ceil(quota)))
