"""Tables: what every parser returns (ratings, items, users plus the files their lines refer to), and the
typed columns the formats share, built from string `fields`."""
from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from data_prep.parse.fields import cast_column

YEAR_SUFFIX = r"^(.*?)\s*\((\d{4})\)\s*$"


@dataclass(frozen=True)
class Tables:
    """ratings (user_id, item_id, rating, timestamp, line), items (item_id, title, year, genres, line),
    users (user_id plus features, line or none); `*_file` name the files the lines refer to."""

    ratings: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame | None
    ratings_file: str
    items_file: str
    users_file: str | None


def title_and_year(title: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """`Toy Story (1995)` → (`Toy Story`, 1995); a title without a trailing `(YYYY)` keeps its text and
    gets a null year."""
    year = title.str.extract(YEAR_SUFFIX, 2).cast(pl.Int32, strict=False)
    bare = pl.when(year.is_not_null()).then(title.str.extract(YEAR_SUFFIX, 1)).otherwise(title.str.strip_chars())
    return bare, year


def typed_ratings(frame: pl.DataFrame, file: str) -> pl.DataFrame:
    """user_id, item_id, rating, timestamp, line from string columns of the same names."""
    return pl.DataFrame([
        cast_column(frame, "user_id", pl.Int64, file, "an integer user id"),
        cast_column(frame, "item_id", pl.Int64, file, "an integer item id"),
        cast_column(frame, "rating", pl.Float32, file, "a number"),
        cast_column(frame, "timestamp", pl.Int64, file, "an integer unix timestamp"),
        frame["line"],
    ])


NO_GENRES = "(no genres listed)"


def split_genres(genres: pl.Expr, sep: str) -> pl.Expr:
    """`Action|Comedy` → ["Action", "Comedy"]; `(no genres listed)` → []. An empty name stays in the list
    (as "") so that validation can report its line."""
    listed = genres.str.strip_chars()
    return (
        pl.when(listed == NO_GENRES)
        .then(pl.lit([], dtype=pl.List(pl.String)))
        .otherwise(listed.str.split(sep))
    )


def typed_movies(raw: pl.DataFrame, file: str, id_what: str) -> pl.DataFrame:
    """item_id, title, year, genres, line from the string columns item_id, title (`Name (YYYY)`) and
    `|`-separated genres that the `.dat` and CSV movie files share; ``id_what`` names the id in errors."""
    title, year = title_and_year(pl.col("title"))
    return raw.select(
        cast_column(raw, "item_id", pl.Int64, file, id_what),
        title.alias("title"),
        year.alias("year"),
        split_genres(pl.col("genres"), "|").alias("genres"),
        pl.col("line"),
    )
