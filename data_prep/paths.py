"""Where data lives: `--data-dir`, else `$RECKD_DATA_DIR`, else the user cache dir; never the repo."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The root that holds one folder per dataset (`DATA_DIR/DATASET/raw`, `…/canonical`)."""
    if explicit is not None:
        return Path(explicit).expanduser()
    from_env = os.environ.get("RECKD_DATA_DIR")
    if from_env:
        return Path(from_env).expanduser()
    return Path(platformdirs.user_cache_dir("reckd"))


def raw_dir(dataset: str, root: Path) -> Path:
    return root / dataset / "raw"


def canonical_dir(dataset: str, root: Path) -> Path:
    return root / dataset / "canonical"
