"""The device is chosen once, here: ``auto`` takes CUDA when a GPU answers, else the CPU."""

from __future__ import annotations

import torch

from reckd.errors import ReckdError


def resolve_device(spec: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu`` / ``cuda`` / ``cuda:N`` as given. Asking
    for CUDA on a machine without it is an error, not a silent fallback."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ReckdError(f"--device {spec}: CUDA is not available on this machine (use cpu or auto)")
    if spec != "cpu" and not spec.startswith("cuda"):
        raise ReckdError(f"--device: expected auto, cpu or cuda[:N], found {spec!r}")
    return torch.device(spec)
