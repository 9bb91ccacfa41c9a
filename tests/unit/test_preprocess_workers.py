"""Preprocess's default worker count follows the pod's CPU limit (the cgroup quota)."""

from pathlib import Path

import pytest

from docloop.documents import preprocess


@pytest.fixture
def one_core_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preprocess.os, "sched_getaffinity", lambda pid: set(range(16)))


@pytest.mark.parametrize(
    ("cpu_max", "workers"),
    [("100000 100000", 1), ("250000 100000", 3), ("50000 100000", 1), ("max 100000", 16)],
)
def test_cgroup_v2_quota_caps_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_core_affinity: None, cpu_max: str,
    workers: int,
) -> None:  # fmt: skip
    """A pod limited to 1 CPU on a 16-core node gets 1 worker, not 16 (cgroup v2 cpu.max)."""
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    monkeypatch.setattr(preprocess, "CGROUP_ROOT", tmp_path, raising=False)
    assert preprocess.default_workers() == workers


def test_cgroup_v1_quota_caps_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_core_affinity: None
) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    monkeypatch.setattr(preprocess, "CGROUP_ROOT", tmp_path, raising=False)
    assert preprocess.default_workers() == 2


def test_no_cgroup_files_means_the_cores_this_process_may_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_core_affinity: None
) -> None:
    monkeypatch.setattr(preprocess, "CGROUP_ROOT", tmp_path, raising=False)
    assert preprocess.default_workers() == 16
