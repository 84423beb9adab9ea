"""`split`: assign every rating to train/val/test (before any genre filtering), mark the teacher's
pre-training ratings, and write a self-contained split folder with `manifest.json`, which carries the
split's content fingerprint and spells out the split codes (`data_prep.manifest`)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import polars as pl

from data_prep import atomic, paths
from data_prep.assign import TEST, TRAIN, VAL, random_codes, temporal_codes
from data_prep.canonical import RATINGS_ORDER, RATINGS_SCHEMA, check_pairs, read_source, read_table
from data_prep.config import SplitConfig
from data_prep.datasets import DATASETS
from data_prep.errors import DataPrepError
from data_prep.folder import claim, legacy_output
from data_prep.genres import genre_table, holdout_items, item_genres
from data_prep.manifest import split_manifest

COMMAND = "data_prep split"  # the owner marker of a split folder
FILES = ("ratings.parquet", "items.parquet", "users.parquet", "manifest.json")  # manifest.json: written last
LEGACY = legacy_output(set(FILES), "manifest.json", {"format", "dataset", "source_checksum", "scheme", "counts", "genres"})


def canonical_for(dataset: str, root: Path) -> Path:
    canonical = paths.canonical_dir(dataset, root)
    if dataset not in DATASETS and not canonical.exists():
        raise DataPrepError(
            f"DATASET: unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)} or a name written by "
            f"`data_prep synth --name`, found no {canonical}"
        )
    return canonical


def check_holdout(items: pl.DataFrame, config: SplitConfig) -> None:
    known = sorted(item_genres(items)["genre"].unique())
    unknown = [g for g in config.holdout_genres if g not in known]
    if unknown:
        raise DataPrepError(
            f"--holdout-genres: expected genres of this dataset ({', '.join(known)}), found {', '.join(unknown)}"
        )


def assign(ratings: pl.DataFrame, items: pl.DataFrame, config: SplitConfig) -> pl.DataFrame:
    """ratings in canonical order plus `split` (Int8) and `teacher` (split == train and no holdout genre)."""
    ratings = ratings.sort(RATINGS_ORDER)
    if config.scheme == "random":
        ratings = ratings.with_columns(random_codes(ratings.height, config.val, config.test, config.seed))
    else:
        ratings = ratings.with_columns(temporal_codes(config.val, config.test))
    held_out = holdout_items(items, config.holdout_genres)
    teacher = (pl.col("split") == TRAIN) & ~pl.col("item_id").is_in(held_out.implode())
    return ratings.with_columns(teacher.alias("teacher"))


def check_nonempty(ratings: pl.DataFrame, config: SplitConfig) -> None:
    """Train, validation and test each get at least one rating; fractions too small for the data are an error
    naming the flag and the counts (an empty validation set would only fail later, in training)."""
    counts = ratings["split"].value_counts()
    n = dict(zip(counts["split"].to_list(), counts["count"].to_list()))
    found = (f"train {n.get(TRAIN, 0)}, val {n.get(VAL, 0)}, test {n.get(TEST, 0)} of {ratings.height} ratings")
    if config.scheme == "random":
        rounding = "round({f} × {n}) = 0".replace("{n}", str(ratings.height))
    else:
        most = ratings["user_id"].value_counts()["count"].max()
        rounding = f"round({{f}} × a user's ratings) = 0 for every user (the most active has {most})"
    for flag, fraction, code, what in (("--val", config.val, VAL, "validation"), ("--test", config.test, TEST, "test")):
        if n.get(code, 0) == 0:
            raise DataPrepError(f"{flag} {fraction}: expected at least one {what} rating, found {found} "
                                f"({rounding.format(f=fraction)}); raise {flag}")
    if n.get(TRAIN, 0) == 0:
        raise DataPrepError(f"--val {config.val}/--test {config.test}: expected training ratings left, found {found}; "
                            f"lower --val/--test")


def split(dataset: str, out: str | Path, data_dir: str | Path | None = None, config: SplitConfig | None = None
          ) -> dict[str, Any]:
    """Split `dataset`'s canonical ratings into the folder `out`; returns the manifest.

    `out` must be new, empty, or a folder `data_prep split` wrote before: it is claimed (locked and marked,
    see data_prep.folder) for the whole run. Its four files are staged and renamed in together, manifest.json
    last; nothing else in the folder is touched, and a failed run leaves the earlier split as it was."""
    config = config or SplitConfig()
    canonical = canonical_for(dataset, paths.data_dir(data_dir))
    source = read_source(canonical, dataset)
    with claim(out, COMMAND, legacy=LEGACY) as folder:
        items = read_table(canonical / "items.parquet", ("item_id", "genres"))
        check_holdout(items, config)
        read_table(canonical / "users.parquet", ("user_id",))  # copied as it is: check it reads
        ratings = read_table(canonical / "ratings.parquet", RATINGS_SCHEMA)
        check_pairs(ratings.with_row_index("line", offset=1), str(canonical / "ratings.parquet"), unit="row",
                    hint="; canonical data holds one rating per pair (`data_prep prepare --duplicates keep-latest`)")
        ratings = assign(ratings, items, config)
        check_nonempty(ratings, config)
        if not ratings["teacher"].any():
            raise DataPrepError(
                f"--holdout-genres: expected the teacher to keep some training ratings, found none after holding "
                f"out {', '.join(config.holdout_genres)}"
            )
        result = split_manifest(dataset, source, config, ratings, genre_table(ratings, items, config))
        atomic.write_together(folder, {
            "ratings.parquet": ratings.write_parquet,
            "items.parquet": lambda tmp: shutil.copyfile(canonical / "items.parquet", tmp),
            "users.parquet": lambda tmp: shutil.copyfile(canonical / "users.parquet", tmp),
            "manifest.json": lambda tmp: tmp.write_text(atomic.json_text(result), encoding="utf-8"),
        })
    return result
