"""Inference threads follow the container's CPU quota (cgroup v2 cpu.max, or v1 cfs files)."""

from __future__ import annotations

from pathlib import Path

from sentiment_workers.model.threads import available_cpus, cpu_quota, default_threads


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_cgroup_v2_quota_is_read_as_cpus(tmp_path: Path) -> None:
    assert cpu_quota(write(tmp_path / "cpu.max", "150000 100000\n")) == 1.5
    assert cpu_quota(write(tmp_path / "cpu.max", "50000 100000\n")) == 0.5


def test_unlimited_cgroup_means_no_quota(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    assert cpu_quota(write(tmp_path / "cpu.max", "max 100000\n"), missing, missing) is None


def test_cgroup_v1_files_are_the_fallback(tmp_path: Path) -> None:
    quota = write(tmp_path / "cpu.cfs_quota_us", "200000\n")
    period = write(tmp_path / "cpu.cfs_period_us", "100000\n")
    assert cpu_quota(tmp_path / "no-v2", quota, period) == 2.0
    unlimited = write(tmp_path / "unlimited_quota", "-1\n")
    assert cpu_quota(tmp_path / "no-v2", unlimited, period) is None


def test_threads_round_a_fractional_quota_up_and_never_exceed_the_affinity_mask(tmp_path: Path) -> None:
    cpus = available_cpus()
    assert default_threads(write(tmp_path / "a", "150000 100000")) == min(cpus, 2)
    assert default_threads(write(tmp_path / "b", "10000 100000")) == 1
    assert default_threads(write(tmp_path / "c", "6400000 100000")) == cpus
    assert default_threads(write(tmp_path / "d", "max 100000")) == cpus


def test_unreadable_quota_falls_back_to_the_affinity_mask(tmp_path: Path) -> None:
    assert default_threads(write(tmp_path / "garbage", "not numbers")) == available_cpus()
