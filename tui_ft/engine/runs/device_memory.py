"""Where a run will train and how much memory is free there, asked without torch.

``auto`` is decided as :func:`tui_ft.engine.models.devices.pick_device` decides it (cuda, then
mps, then cpu), counting GPUs without initialising CUDA. Free GPU memory comes from
``nvidia-smi`` (no CUDA context in this process: the dashboard asks at every key), free RAM
from ``MemAvailable``; ``$TUI_FT_MEMORY_CAPACITY_BYTES`` overrides both.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

CAPACITY_ENV = "TUI_FT_MEMORY_CAPACITY_BYTES"  # tests (and users who share a machine) set the capacity
NVIDIA_SMI_TIMEOUT_S = 3.0


def resolve_device_kind(device: str) -> str:
    """``cuda``, ``mps`` or ``cpu`` for a config's device, ``auto`` decided without torch."""
    if device != "auto":
        return device.split(":")[0]
    from tui_ft.engine.models.devices import visible_gpu_count

    if visible_gpu_count() > 0:
        return "cuda"
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return "mps"
    return "cpu"


def device_label(device: str, kind: str) -> str:
    if kind == "cuda":
        return device if ":" in device else "cuda:0"
    return kind


def device_capacity(device: str, ranks: int = 1) -> int | None:
    """Free memory for a run on ``device``: the least free of its GPUs, or the available RAM.

    ``$TUI_FT_MEMORY_CAPACITY_BYTES`` wins when set. GPUs are asked through ``nvidia-smi`` (no
    CUDA context in this process); where that fails and torch is already loaded,
    ``torch.cuda.mem_get_info``. ``None`` when it cannot be told.
    """
    forced = os.environ.get(CAPACITY_ENV)
    if forced:
        try:
            return int(float(forced))
        except ValueError:
            pass
    kind = device.split(":")[0]
    if kind != "cuda":
        import psutil

        return int(psutil.virtual_memory().available)  # MemAvailable on Linux
    first = int(device.split(":")[1]) if ":" in device else 0
    free = [gpu_info(index).get("free") for index in range(first, first + ranks)]
    if any(value is None for value in free):
        free = [_torch_free(index) for index in range(first, first + ranks)]
    return None if any(value is None for value in free) else min(free)


GPU_INFO_TTL_S = 2.0  # the Train form plans at every key: one nvidia-smi call every few seconds is enough
GPU_INFO_CACHE: dict[str, tuple[float, dict]] = {}


def gpu_info(index: int) -> dict:
    """``free`` bytes and ``bf16`` (compute capability 8.0 and up) of visible GPU ``index`` from ``nvidia-smi``."""
    key = f"{os.environ.get('CUDA_VISIBLE_DEVICES')}/{index}"
    cached = GPU_INFO_CACHE.get(key)
    if cached and time.monotonic() - cached[0] < GPU_INFO_TTL_S:
        return cached[1]
    info = _ask_nvidia_smi(index)
    GPU_INFO_CACHE[key] = (time.monotonic(), info)
    return info


def _ask_nvidia_smi(index: int) -> dict:
    command = shutil.which("nvidia-smi")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [entry.strip() for entry in visible.split(",")]
        if index >= len(entries) or not entries[index] or entries[index].startswith("-"):
            return {}
        selector = entries[index]
    else:
        selector = str(index)
    if not command:
        return {}
    try:
        line = subprocess.run([command, "-i", selector, "--query-gpu=memory.free,compute_cap",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True,
                              timeout=NVIDIA_SMI_TIMEOUT_S, check=True, stdin=subprocess.DEVNULL).stdout.strip()
        free, capability = (part.strip() for part in line.splitlines()[0].split(","))
        return {"free": int(float(free)) * 2**20, "bf16": float(capability) >= 8.0}
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {}


def _torch_free(index: int) -> int | None:
    torch = sys.modules.get("torch")  # only where torch is loaded already: never a context just to ask
    if torch is None or not torch.cuda.is_available():
        return None
    try:
        return int(torch.cuda.mem_get_info(index)[0])
    except RuntimeError:
        return None


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return next((line for line in text.splitlines() if line.startswith("flags")), "")
