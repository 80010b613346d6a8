"""What the benchmarks print about the machine: CPU, cores, torch, and how busy it is.

The development machine is shared, so every benchmark prints the load average at its start
and end and warns when another process was competing for the cores.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

BUSY_LOAD = 1.5  # 1-minute load average above which numbers are suspect on a 2-core machine


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def has_amx() -> bool:
    """True when the CPU has AMX tiles (bf16 matrix units that make bf16 autocast pay off)."""
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def load_average() -> float:
    """The 1-minute load average (0 where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def describe_machine() -> str:
    """One line: CPU model, cores, AMX, torch version and threads."""
    import torch

    amx = ", AMX" if has_amx() else ""
    return (f"{cpu_model()} ({os.cpu_count()} cores{amx}); torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; Python {platform.python_version()}")


def load_line(when: str) -> str:
    """``load average at WHEN: X`` with a warning when the machine is busy."""
    load = load_average()
    warning = f"  WARNING: load > {BUSY_LOAD}, other processes compete for the CPU" if load > BUSY_LOAD else ""
    return f"load average at {when}: {load:.2f}{warning}"
