"""Counting visible CUDA GPUs without torch: ``CUDA_VISIBLE_DEVICES`` first, else ``nvidia-smi -L``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tui_ft.engine.models import devices
from tui_ft.engine.models.devices import count_visible_devices, visible_gpu_count

NVIDIA_SMI_LISTING = """GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-bbbb)
  MIG 1g.10gb     Device  0: (UUID: MIG-cccc)
GPU 2: NVIDIA H100 80GB HBM3 (UUID: GPU-dddd)
"""


LIST_GPUS = f"printf '%s' '{NVIDIA_SMI_LISTING}'"  # a shell builtin: PATH holds only the fake


def fake_nvidia_smi(folder: Path, body: str) -> Path:
    """An ``nvidia-smi`` on PATH that runs ``body`` (a shell script) and records its arguments."""
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{folder}/calls"\n{body}\n')
    script.chmod(0o755)
    return folder


@pytest.fixture
def bare_path(tmp_path, monkeypatch):
    """PATH holds only an empty folder (so no real nvidia-smi) and CUDA_VISIBLE_DEVICES is unset."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return tmp_path


@pytest.mark.parametrize(("value", "count"), [
    ("0,1", 2), ("0,1,2,3", 4), ("3", 1), (" 0 , 2 ", 2), ("GPU-aaaa,GPU-bbbb", 2),
    ("", 0), ("-1", 0), ("0,-1,1", 1), ("0,,1", 1),
])
def test_cuda_visible_devices_counts_its_entries_up_to_the_first_invalid_one(value, count):
    assert count_visible_devices(value) == count


def test_cuda_visible_devices_wins_over_nvidia_smi(bare_path, monkeypatch):
    folder = fake_nvidia_smi(bare_path / "bin", LIST_GPUS)
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert visible_gpu_count() == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # set but empty hides every GPU
    assert visible_gpu_count() == 0
    assert not (folder / "calls").exists()  # the environment answered: nvidia-smi was never run


def test_nvidia_smi_lines_count_gpus_not_mig_slices(bare_path, monkeypatch):
    folder = fake_nvidia_smi(bare_path / "bin", LIST_GPUS)
    monkeypatch.setenv("PATH", str(folder))
    assert visible_gpu_count() == 3
    assert (folder / "calls").read_text().split() == ["-L"]


def test_no_nvidia_smi_means_no_gpus(bare_path):
    assert visible_gpu_count() == 0


@pytest.mark.parametrize("body", ["echo 'NVIDIA-SMI has failed' >&2; exit 9", "exec /bin/sleep 30"])
def test_a_failing_or_hung_nvidia_smi_means_no_gpus(bare_path, monkeypatch, body):
    monkeypatch.setenv("PATH", str(fake_nvidia_smi(bare_path / "bin", body)))
    monkeypatch.setattr(devices, "NVIDIA_SMI_TIMEOUT_S", 0.5)
    assert visible_gpu_count() == 0


def test_counting_imports_no_torch():
    code = "import sys; from tui_ft.engine.models.devices import visible_gpu_count; visible_gpu_count(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(("visible", "nproc", "refused"), [("0", 2, True), ("0,1", 2, False), ("", 2, False)])
def test_a_run_asking_more_processes_than_gpus_is_refused_without_importing_torch(monkeypatch, visible, nproc, refused):
    from tui_ft.engine.runs.config import TrainConfig
    from tui_ft.engine.runs.config_checks import check_values

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    errors = check_values(TrainConfig(model="default", dataset="d.jsonl", nproc=nproc, batch_size=4).resolved())
    found = [message for field, message in errors if field == "nproc"]
    assert found == (["this machine has 1 CUDA device(s), got nproc 2"] if refused else []), errors
    code = ("import os, sys; os.environ['CUDA_VISIBLE_DEVICES'] = '0'; from tui_ft.engine.runs.config import TrainConfig; "
            "from tui_ft.engine.runs.config_checks import check_values; "
            "check_values(TrainConfig(model='default', dataset='d.jsonl', nproc=2, batch_size=4).resolved()); "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
