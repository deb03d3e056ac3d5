"""Where models run: the GPU when there is one, the CPU otherwise, unless told."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def pick_device(setting: str = "auto") -> torch.device:
    if setting not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {list(DEVICE_CHOICES)}, got {setting!r}")
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("DEVICE=cuda but torch sees no CUDA device")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)
