"""The devices a model runs on: GPUs counted without torch, the one device rule, the CPU's bf16 units.

:func:`pick_device` is the one rule for ``auto`` (training, chat and evaluation alike): cuda,
then mps, then cpu.

:func:`visible_gpu_count` counts the CUDA GPUs this process would see without torch and
without initialising CUDA. The Train pane uses the count to start its Processes field at "all GPUs". Importing torch
costs seconds and creating a CUDA context claims memory on every GPU, so the dashboard asks
the environment instead: ``CUDA_VISIBLE_DEVICES`` when it is set (it decides what CUDA
shows), else one line per GPU from ``nvidia-smi -L``, else none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

NVIDIA_SMI_TIMEOUT_S = 3.0  # a hung driver must not hold the pane's worker for long


def visible_gpu_count() -> int:
    """The number of CUDA GPUs visible to a process started from here; 0 when there are none or it cannot tell."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return count_visible_devices(visible)
    return nvidia_smi_gpu_count()


def count_visible_devices(visible: str) -> int:
    """The devices a ``CUDA_VISIBLE_DEVICES`` value lets through.

    CUDA reads the list up to its first invalid entry, so an empty value and ``-1`` (the usual
    way to hide every GPU) give 0, and ``0,-1,1`` gives 1.
    """
    count = 0
    for entry in visible.split(","):
        entry = entry.strip()
        if not entry or entry.startswith("-"):
            break
        count += 1
    return count


def nvidia_smi_gpu_count() -> int:
    """GPUs listed by ``nvidia-smi -L`` (one ``GPU N: ...`` line each); 0 without the binary or when it fails."""
    command = shutil.which("nvidia-smi")
    if not command:
        return 0
    try:
        listing = subprocess.run([command, "-L"], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S,
                                 check=True, stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


INFERENCE_DEVICE_ENV = "TUI_FT_DEVICE"  # where chat and evaluation run (training has its own setting)


def inference_device() -> str:
    """The device chat and evaluation use: ``$TUI_FT_DEVICE`` (``cuda:1`` keeps them off a
    run training on ``cuda:0``), else the ``auto`` rule."""
    return pick_device(os.environ.get(INFERENCE_DEVICE_ENV, "").strip() or "auto")


def pick_device(requested: str) -> str:
    """``auto`` picks cuda, then mps, then cpu; anything else is used as given."""
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cpu_has_amx() -> bool:
    """True when this CPU has AMX tiles (bf16 matrix units), where bf16 inference pays off."""
    import torch

    probe = getattr(torch._C._cpu, "_is_amx_tile_supported", None)
    if probe is not None:
        return bool(probe())
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def bf16_is_native(device: str) -> bool:
    """True when ``device`` computes bf16 in hardware, fast enough to train in it.

    CUDA: compute capability 8.0 and up (``is_bf16_supported`` counts emulation as support by
    default, and a V100 or T4 emulates it slowly). CPU: AMX tiles or AVX-512 BF16. MPS: yes.
    """
    kind = device.split(":")[0]
    if kind == "cuda":
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if kind == "cpu":
        return cpu_has_amx() or "avx512_bf16" in _cpu_flags()
    return kind == "mps"


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()
