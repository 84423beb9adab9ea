"""The per-genre table of a split: counts per split, the teacher's share, users, items, and the class
(dense | sparse | excluded) under the documented rule. A rating counts toward every genre of its movie."""
from __future__ import annotations

from typing import Any

import polars as pl

from data_prep.assign import TEST, TRAIN, VAL
from data_prep.config import SplitConfig

COUNTS = ("train", "val", "test", "teacher_train")


def item_genres(items: pl.DataFrame) -> pl.DataFrame:
    """(item_id, genre) pairs; movies without genres contribute none."""
    return items.select("item_id", pl.col("genres").alias("genre")).explode("genre").drop_nulls("genre").unique()


def holdout_items(items: pl.DataFrame, holdout: tuple[str, ...]) -> pl.Series:
    """Item ids of movies that have at least one holdout genre."""
    pairs = item_genres(items)
    return pairs.filter(pl.col("genre").is_in(list(holdout)))["item_id"].unique().sort()


def genre_class(test: int, train_share: float, config: SplitConfig) -> str:
    if test < config.min_test_ratings:
        return "excluded"
    return "sparse" if train_share < config.sparse_below else "dense"


def genre_table(ratings: pl.DataFrame, items: pl.DataFrame, config: SplitConfig) -> dict[str, dict[str, Any]]:
    """GENRE → {train, val, test, teacher_train, users, items, train_share, class, holdout} for every genre
    of the items table (a genre nobody rated has zero counts and is excluded)."""
    pairs = item_genres(items)
    split = pl.col("split")
    per_item = ratings.lazy().group_by("item_id").agg(
        (split == TRAIN).sum().alias("train"), (split == VAL).sum().alias("val"),
        (split == TEST).sum().alias("test"), pl.col("teacher").sum().alias("teacher_train"),
    )
    counts = (
        pairs.lazy().join(per_item, on="item_id", how="inner").group_by("genre")
        .agg(*[pl.col(c).sum() for c in COUNTS], pl.len().alias("items"))
    )
    users = (
        ratings.lazy().select("user_id", "item_id").join(pairs.lazy(), on="item_id", how="inner")
        .group_by("genre").agg(pl.col("user_id").n_unique().alias("users"))
    )
    table = (
        pairs.lazy().select("genre").unique()
        .join(counts, on="genre", how="left").join(users, on="genre", how="left")
        .fill_null(0).sort("genre").collect(engine="streaming")
    )
    total_train = int((ratings["split"] == TRAIN).sum())
    out: dict[str, dict[str, Any]] = {}
    for row in table.iter_rows(named=True):  # one row per genre, not per rating
        train_share = round(row["train"] / total_train, 6) if total_train else 0.0
        out[row["genre"]] = {
            **{c: int(row[c]) for c in COUNTS}, "users": int(row["users"]), "items": int(row["items"]),
            "train_share": train_share, "class": genre_class(int(row["test"]), train_share, config),
            "holdout": row["genre"] in config.holdout_genres,
        }
    return out
