"""The README's ML-100K split and teacher, made where missing: shared by the benchmark scripts.

Split: random 80/10/10, seed 0 (`data_prep fetch` — GroupLens, else the PyPI mirror — then prepare and
split). Teacher: `reckd pretrain` with its defaults; a finished teacher of the same options is reused, one
of other options is refused (`pretrain` names the keys).
"""

from __future__ import annotations

from pathlib import Path

import torch

from data_prep import api as data_prep
from reckd.data.split import SplitData, load_split


def readme_split(root: Path, device: torch.device | str = "cpu") -> SplitData:
    """``ROOT/split``, made first if missing, loaded onto ``device``."""
    if not (root / "split" / "manifest.json").is_file():
        data_prep.fetch("ml-100k")
        data_prep.prepare("ml-100k")
        data_prep.split("ml-100k", root / "split", seed=0)
    return load_split(root / "split").to(device)


def readme_teacher(root: Path, data: SplitData) -> Path:
    """``ROOT/teacher``, pre-trained first unless it holds a finished teacher of the default options."""
    from reckd.train.teacher import pretrain

    pretrain(data, root / "teacher")
    return root / "teacher"
