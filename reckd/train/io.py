"""reckd's file helpers, on data_prep's one atomic writer (temp file in the same folder, then rename)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_prep.atomic import read_json, write_json, write_with

__all__ = ["append_jsonl", "read_array", "read_json", "write_array", "write_json", "write_torch", "write_with"]


def write_torch(path: Path, obj: Any) -> None:
    """``torch.save`` through a file object: saved by path, torch names the zip's folder after the file —
    here the random temp name — so equal states gave different bytes and checkpoint SHA-256s."""
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
    write_with(Path(path), save)


def write_array(path: Path, array) -> None:
    """A float32 ``.npy`` file (test predictions: what a paired significance test reads back)."""
    values = np.asarray(array, dtype=np.float32)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a path
            np.save(f, values)
    write_with(Path(path), save)


def read_array(path: Path) -> np.ndarray:
    from reckd.errors import ReckdError

    try:
        return np.load(path)
    except (OSError, ValueError) as error:
        raise ReckdError(f"{path}: expected a .npy array of test predictions, found an unreadable file ({error})") from None


def append_jsonl(path: Path, obj: Any) -> None:
    """One JSON line per epoch; appending a whole line is the unit of progress, not a file."""
    with open(path, "a") as f:
        f.write(json.dumps(obj, sort_keys=True) + "\n")
