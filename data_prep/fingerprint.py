"""The content fingerprint of a split: which rating went where, and by which rule. A teacher and every run
record it, so that nothing trained on one split is ever used with another.

    sha256( b"data_prep split fingerprint 1\\n"
            + rule as JSON (sorted keys, no spaces) + b"\\n"
            + for each column c in (user_id <i8, item_id <i8, rating <f4, split i1, teacher u1):
                  b"c dtype rows\\n" + the column's little-endian bytes, rows in canonical order )

The rule is {scheme, seed, val, test, holdout_genres (sorted), sparse_below, min_test_ratings,
rating_scale {min, max, step}}. Only these values enter, never the parquet file's bytes, so the fingerprint
does not change with the parquet writer, compression or row groups; any change of assignment changes it."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import numpy as np
import polars as pl

from data_prep.config import SplitConfig

VERSION = b"data_prep split fingerprint 1\n"
COLUMNS = (("user_id", "<i8"), ("item_id", "<i8"), ("rating", "<f4"), ("split", "i1"), ("teacher", "u1"))


def split_rule(config: SplitConfig, rating_scale: Mapping[str, float]) -> dict:
    """The settings that decide a split's assignment and genre classes, as the fingerprint hashes them."""
    return {"scheme": config.scheme, "seed": config.seed, "val": config.val, "test": config.test,
            "holdout_genres": sorted(config.holdout_genres), "sparse_below": config.sparse_below,
            "min_test_ratings": config.min_test_ratings,
            "rating_scale": {k: float(rating_scale[k]) for k in ("min", "max", "step")}}


def split_fingerprint(ratings: pl.DataFrame, config: SplitConfig, rating_scale: Mapping[str, float]) -> str:
    """`"sha256:…"` of `ratings` (user_id, item_id, rating, split, teacher; other columns are ignored) in
    their given row order — a split's canonical order — and the rule that made them (see the module)."""
    digest = hashlib.sha256(VERSION)
    digest.update(json.dumps(split_rule(config, rating_scale), sort_keys=True, separators=(",", ":")).encode())
    digest.update(b"\n")
    for name, dtype in COLUMNS:
        column = ratings[name]
        if column.null_count():
            raise ValueError(f"split_fingerprint: column {name!r} has {column.null_count()} missing values")
        values = column.to_numpy()
        values = np.ascontiguousarray(values.astype(np.uint8) if values.dtype == bool else values, dtype=dtype)
        digest.update(f"{name} {dtype} {len(values)}\n".encode())
        digest.update(memoryview(values).cast("B"))
    return "sha256:" + digest.hexdigest()
