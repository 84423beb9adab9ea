"""The two split schemes: a split code per rating (0 train, 1 val, 2 test), independent of genres, so the
teacher and every student see the same held-out ratings."""
from __future__ import annotations

import numpy as np
import polars as pl

TRAIN, VAL, TEST = 0, 1, 2  # the one definition of the `split` column's codes; reckd imports these
SPLIT_CODES = {"train": TRAIN, "val": VAL, "test": TEST}


def share(fraction: float, n: int | np.ndarray) -> np.ndarray | int:
    """round(fraction·n), halves rounded up, so counts do not depend on banker's rounding."""
    return np.floor(fraction * np.asarray(n) + 0.5).astype(np.int64)


def random_codes(n: int, val: float, test: float, seed: int) -> pl.Series:
    """Exactly share(test, n) test and share(val, n) val ratings, chosen by one seeded permutation of the
    rows (rows are in canonical order, so the same data and seed give the same codes)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = int(share(test, n)), int(share(val, n))
    codes = np.full(n, TRAIN, dtype=np.int8)
    codes[order[:n_test]] = TEST
    codes[order[n_test:n_test + n_val]] = VAL
    return pl.Series("split", codes)


def temporal_codes(val: float, test: float) -> pl.Expr:
    """Per user, over ratings in (timestamp, item_id) order: the last share(test, n_u) are test, the
    share(val, n_u) before them val. Needs the frame sorted by (user_id, timestamp, item_id)."""
    n_u = pl.len().over("user_id")
    from_end = n_u - 1 - pl.int_range(pl.len(), dtype=pl.UInt32).over("user_id")
    n_test = (n_u * test + 0.5).floor()
    n_val = (n_u * val + 0.5).floor()
    return (
        pl.when(from_end < n_test).then(pl.lit(TEST, pl.Int8))
        .when(from_end < n_test + n_val).then(pl.lit(VAL, pl.Int8))
        .otherwise(pl.lit(TRAIN, pl.Int8))
        .alias("split")
    )
