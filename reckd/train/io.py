"""reckd's file helpers, on data_prep's one atomic writer (temp file in the same folder, then rename)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from data_prep.atomic import read_json, write_json, write_with

__all__ = ["append_jsonl", "read_json", "write_json", "write_torch", "write_with"]


def write_torch(path: Path, obj: Any) -> None:
    write_with(Path(path), lambda tmp: torch.save(obj, tmp))


def append_jsonl(path: Path, obj: Any) -> None:
    """One JSON line per epoch; appending a whole line is the unit of progress, not a file."""
    with open(path, "a") as f:
        f.write(json.dumps(obj, sort_keys=True) + "\n")
