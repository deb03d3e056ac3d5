"""What a measurement ran on, for every report that states a number."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def describe() -> str:
    m = machine()
    return (
        f"{m['cpu']}, GPU: {m['gpu'] or 'none'}, torch {m['torch']} with "
        f"{m['torch_threads']} threads, Python {m['python']}"
    )
