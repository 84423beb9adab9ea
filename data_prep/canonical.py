"""Stage 3, canonical: the schema every source is turned into, its checks, and the folder that holds it,
`DATA_DIR/DATASET/canonical/` (`ratings.parquet`, `items.parquet`, `users.parquet`, `source.json`), written
by `prepare` from the parsed files (or by `synth`) and read by `split`."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

from data_prep import atomic, paths
from data_prep.sources.checksum import file_digest
from data_prep.datasets import RatingScale, spec_for
from data_prep.errors import DataPrepError
from data_prep.folder import claim, legacy_output
from data_prep.parse import Tables, parse_raw
from data_prep.sources import RawFiles

RATINGS_SCHEMA = {"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float32, "timestamp": pl.Int64}
USER_FEATURES = ("gender", "age", "occupation", "zip")  # ML-100K/1M order; other columns follow, by name
ITEMS_SCHEMA = {"item_id": pl.Int64, "title": pl.String, "year": pl.Int32, "genres": pl.List(pl.String)}
RATINGS_ORDER = ("user_id", "timestamp", "item_id")  # the one deterministic row order of every ratings file
COMMAND = "data_prep canonical"  # the owner marker of a canonical folder (written by prepare or synth)
SOURCE_KEYS = ("dataset", "source", "checksum", "layout", "rating_scale")  # what source.json always holds
LEGACY = legacy_output({"ratings.parquet", "items.parquet", "users.parquet", "source.json"}, "source.json",
                       set(SOURCE_KEYS))  # a canonical folder made before owner markers
DUPLICATES = ("error", "keep-latest")  # what `prepare --duplicates` does with a (user_id, item_id) rated twice


def first_bad(frame: pl.DataFrame, mask: pl.Series) -> dict[str, Any] | None:
    """The first row where `mask` holds, or None."""
    hits = mask.fill_null(True).arg_true()
    return frame.row(int(hits[0]), named=True) if len(hits) else None


def check_scale(ratings: pl.DataFrame, scale: RatingScale, file: str) -> None:
    """Every rating lies in [min, max] on the `step` grid; else an error naming the first bad line."""
    r = ratings["rating"].cast(pl.Float64)
    steps = (r - scale.min) / scale.step
    off = (r < scale.min - 1e-9) | (r > scale.max + 1e-9) | ((steps - steps.round()).abs() > 1e-6)
    row = first_bad(ratings, off)
    if row is not None:
        raise DataPrepError(
            f"{file} line {row['line']}: expected a rating from {scale.min:g} to {scale.max:g} in steps of "
            f"{scale.step:g}, found {row['rating']:g}"
        )


def check_unique(frame: pl.DataFrame, key: str, file: str) -> None:
    """Each `key` appears once (frames are in file order, so the repeat is the later line)."""
    row = first_bad(frame, ~frame[key].is_first_distinct())
    if row is not None:
        raise DataPrepError(f"{file} line {row['line']}: expected each {key} once, found {row[key]} again")


def pair_key(ratings: pl.DataFrame) -> pl.Expr:
    """One value per (user_id, item_id): a packed Int64 when both ids fit in 31 bits (as MovieLens ids do;
    several times faster on 25M rows), else a struct."""
    small = all(ratings.height == 0 or (ratings[c].min() >= 0 and ratings[c].max() < 2**31) for c in ("user_id", "item_id"))
    return pl.col("user_id") * 2**32 + pl.col("item_id") if small else pl.struct("user_id", "item_id")


def check_pairs(ratings: pl.DataFrame, file: str, unit: str = "line", hint: str = "") -> None:
    """Each (user_id, item_id) once. `ratings` is in file order with its `line` (or row) numbers; the error
    names the first repeat and where that pair was first seen."""
    key = pair_key(ratings)
    if ratings.select(key.n_unique()).item() == ratings.height:
        return
    repeat = first_bad(ratings, ~ratings.select(key.is_first_distinct()).to_series())
    assert repeat is not None
    same = (pl.col("user_id") == repeat["user_id"]) & (pl.col("item_id") == repeat["item_id"])
    first = ratings.filter(same)["line"].min()
    raise DataPrepError(
        f"{file} {unit} {repeat['line']}: expected each (user_id, item_id) once, found user {repeat['user_id']} "
        f"item {repeat['item_id']} again (first at {unit} {first}){hint}"
    )


def keep_latest(ratings: pl.DataFrame) -> pl.DataFrame:
    """One rating per (user_id, item_id): the one with the latest timestamp, the later line on a tie."""
    return ratings.sort("timestamp", "line").unique(subset=["user_id", "item_id"], keep="last", maintain_order=True)


def check_known(ratings: pl.DataFrame, key: str, table: pl.DataFrame, file: str, table_file: str) -> None:
    row = first_bad(ratings, ~ratings[key].is_in(table[key].implode()))
    if row is not None:
        raise DataPrepError(f"{file} line {row['line']}: expected a {key} listed in {table_file}, found {row[key]}")


def check_genres(items: pl.DataFrame, file: str) -> None:
    empty = items["genres"].list.eval(pl.element().str.strip_chars() == "").list.any()
    row = first_bad(items, empty)
    if row is not None:
        raise DataPrepError(f"{file} line {row['line']}: expected genre names, found an empty one in {row['genres']}")


def canonical_tables(tables: Tables, scale: RatingScale, duplicates: str = "error"
                     ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Validate parsed tables and return (ratings, items, users) in the canonical schema and row order.
    A (user_id, item_id) rated twice is an error (`duplicates="error"`), or only its latest rating is kept
    (`"keep-latest"`; the caller sees how many were dropped from the heights)."""
    if duplicates not in DUPLICATES:
        raise DataPrepError(f"--duplicates: expected one of {', '.join(DUPLICATES)}, found {duplicates!r}")
    check_scale(tables.ratings, scale, tables.ratings_file)
    check_unique(tables.items, "item_id", tables.items_file)
    check_genres(tables.items, tables.items_file)
    check_known(tables.ratings, "item_id", tables.items, tables.ratings_file, tables.items_file)
    if tables.users is not None:
        check_unique(tables.users, "user_id", tables.users_file)
        check_known(tables.ratings, "user_id", tables.users, tables.ratings_file, tables.users_file)
        users = tables.users.drop("line")
    else:
        users = tables.ratings.select(pl.col("user_id").unique())
    ratings = tables.ratings
    if duplicates == "keep-latest":
        ratings = keep_latest(ratings)
    else:
        check_pairs(ratings, tables.ratings_file, hint="; pass --duplicates keep-latest to keep each pair's latest rating")
    ratings = ratings.select([pl.col(c).cast(t) for c, t in RATINGS_SCHEMA.items()]).sort(RATINGS_ORDER)
    items = tables.items.select([pl.col(c).cast(t) for c, t in ITEMS_SCHEMA.items()]).sort("item_id")
    ordered = [c for c in USER_FEATURES if c in users.columns] + sorted(
        c for c in users.columns if c not in USER_FEATURES and c != "user_id")
    return ratings, items, users.select("user_id", *ordered).sort("user_id")


def write_canonical(folder: Path, ratings: pl.DataFrame, items: pl.DataFrame, users: pl.DataFrame,
                    source: dict[str, Any]) -> Path:
    """Write the four canonical files into `folder`, which the caller holds (`claim(folder, COMMAND)`): all
    are staged, then renamed in together, source.json last. A source whose checksum is None (synthetic
    data) gets the SHA-256 of the written ratings file."""
    staged: dict[str, Path] = {}

    def write_ratings(tmp: Path) -> None:
        ratings.write_parquet(tmp)
        staged["ratings"] = tmp

    def write_source(tmp: Path) -> None:
        record = source
        if record.get("checksum") is None:
            record = record | {"checksum": "sha256:" + file_digest(staged["ratings"], "sha256")}
        tmp.write_text(atomic.json_text(record), encoding="utf-8")

    atomic.write_together(folder, {"ratings.parquet": write_ratings, "items.parquet": items.write_parquet,
                                   "users.parquet": users.write_parquet, "source.json": write_source})
    return folder


def prepare(dataset: str, data_dir: str | Path | None = None, duplicates: str = "error") -> Path:
    """Parse the fetched files of `dataset` and write `DATA_DIR/DATASET/canonical/`; returns that folder.

    A (user_id, item_id) rated twice is an error naming both lines; `duplicates="keep-latest"` keeps the
    latest rating of each pair instead, and source.json records how many were dropped."""
    spec = spec_for(dataset)
    root = paths.data_dir(data_dir)
    raw = RawFiles.load(paths.raw_dir(dataset, root), dataset)
    with claim(paths.canonical_dir(dataset, root), COMMAND, "--data-dir", LEGACY) as canonical:
        tables = parse_raw(raw, dataset)
        ratings, items, users = canonical_tables(tables, spec.scale, duplicates)
        source = {
            "dataset": dataset,
            "source": raw.record["source"],
            "checksum": raw.record["checksum"],
            "layout": raw.layout,
            "rating_scale": spec.scale.as_dict(),
            "duplicates": {"policy": duplicates, "dropped": tables.ratings.height - ratings.height},
        }
        return write_canonical(canonical, ratings, items, users, source)


def read_source(canonical: Path, dataset: str) -> dict[str, Any]:
    """The canonical folder's source.json; absent: say what to run; unreadable or incomplete: name it."""
    path = canonical / "source.json"
    if not path.exists():
        raise DataPrepError(
            f"{canonical}: expected canonical data for {dataset}, found none; run `data_prep prepare {dataset}` "
            f"(or `data_prep synth --name {dataset}`) first"
        )
    return atomic.read_json(path, "a canonical source record", SOURCE_KEYS)


def read_table(path: Path, columns: Iterable[str] = ()) -> pl.DataFrame:
    """A parquet table, with at least `columns`; a missing, truncated or foreign file is a DataPrepError
    naming it."""
    try:
        table = pl.read_parquet(path)
    except FileNotFoundError:
        raise DataPrepError(f"{path}: expected a parquet table, found no file") from None
    except (pl.exceptions.PolarsError, OSError) as err:
        raise DataPrepError(f"{path}: expected a parquet table, found a truncated or unreadable file "
                            f"({str(err).splitlines()[0]})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataPrepError(f"{path}: expected columns {', '.join(columns)}, found no {', '.join(missing)} "
                            f"(it has {', '.join(table.columns)})")
    return table
