"""The library API; the CLI is a thin layer over these five functions.

    >>> from data_prep.api import fetch, prepare, split, synth, info
    >>> fetch("ml-100k")                      # GroupLens, else the PyPI mirror
    >>> prepare("ml-100k")                    # → DATA_DIR/ml-100k/canonical
    >>> manifest = split("ml-100k", "runs/split", holdout_genres=("Documentary",))
    >>> print(info("runs/split"))
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_prep.config import DEFAULT_MIN_TEST_RATINGS, DEFAULT_SPARSE_BELOW, SplitConfig, parse_genre_list
from data_prep.sources import fetch as _fetch
from data_prep.manifest import info as _info
from data_prep.canonical import prepare as _prepare
from data_prep.split import split as _split
from data_prep.synth import SynthConfig
from data_prep.synth import synth as _synth


def fetch(dataset: str, data_dir: str | Path | None = None, source: str = "auto", md5: str | None = None) -> Path:
    """Fetch and verify `dataset` into `DATA_DIR/DATASET/raw/`; returns that folder. `source`: "auto",
    "grouplens", "pypi-mirror" or a local archive/folder path; `md5` overrides the expected archive MD5."""
    return _fetch(dataset, data_dir, source, md5)


def prepare(dataset: str, data_dir: str | Path | None = None, duplicates: str = "error") -> Path:
    """Parse the fetched files into `DATA_DIR/DATASET/canonical/` (parquet + source.json); returns it.
    `duplicates`: "error" (a pair rated twice names both lines) or "keep-latest"."""
    return _prepare(dataset, data_dir, duplicates)


def split(dataset: str, out: str | Path, data_dir: str | Path | None = None, scheme: str = "random",
          seed: int = 0, val: float = 0.1, test: float = 0.1, holdout_genres: Sequence[str] | str = (),
          sparse_below: float = DEFAULT_SPARSE_BELOW, min_test_ratings: int = DEFAULT_MIN_TEST_RATINGS
          ) -> dict[str, Any]:
    """Split `dataset` (official or synthetic name) into the folder `out`; returns the manifest."""
    genres = parse_genre_list(holdout_genres) if isinstance(holdout_genres, str) else tuple(holdout_genres)
    config = SplitConfig(scheme, seed, val, test, genres, sparse_below, min_test_ratings)
    return _split(dataset, out, data_dir, config)


def synth(ratings: int, users: int | None = None, items: int | None = None, genres: int = 18, seed: int = 0,
          name: str = "synth", data_dir: str | Path | None = None) -> Path:
    """Generate MovieLens-like data into `DATA_DIR/NAME/canonical/`; returns it."""
    return _synth(SynthConfig(ratings, users, items, genres, seed), name, data_dir)


def info(split_dir: str | Path) -> str:
    """The genre table (counts, class) of a split folder."""
    return _info(split_dir)
