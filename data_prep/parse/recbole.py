"""RecBole atomic files (`NAME.inter`, `NAME.item`, optional `NAME.user`): tab-separated, UTF-8, a header
of `field:type` names. Columns are found by name, so their order does not matter. Titles carry no year
(it is the `release_year` column); genres are one space-separated `token_seq` (`class` or `genre`)."""
from __future__ import annotations

import polars as pl

from data_prep.errors import DataPrepError
from data_prep.parse.fields import cast_column, read_fields
from data_prep.sources import TextFile
from data_prep.parse.tables import Tables, title_and_year, typed_ratings

USER_RENAMES = {"zip_code": "zip"}


def read_atomic(file: TextFile) -> pl.DataFrame:
    """All columns of an atomic file as strings, named without their `:type` suffix."""
    header = file.utf8().split(b"\n", 1)[0].decode("utf-8").strip()
    names = [field.split(":", 1)[0] for field in header.split("\t")]
    return read_fields(file, "\t", names, header=header)


def column(frame: pl.DataFrame, file: TextFile, *candidates: str, required: bool = True) -> str | None:
    """The first of `candidates` that the file has; a required one that is absent is an error."""
    for name in candidates:
        if name in frame.columns:
            return name
    if required:
        raise DataPrepError(
            f"{file.name} line 1: expected a column {' or '.join(candidates)}, found {', '.join(frame.columns[:-1])}"
        )
    return None


def parse_recbole(inter: TextFile, item: TextFile, user: TextFile | None) -> Tables:
    raw = read_atomic(inter)
    for name in ("user_id", "item_id", "rating", "timestamp"):
        column(raw, inter, name)
    ratings = typed_ratings(raw, inter.name)

    raw_items = read_atomic(item)
    column(raw_items, item, "item_id")
    title_col = column(raw_items, item, "movie_title", "title")
    year_col = column(raw_items, item, "release_year", "year", required=False)
    genre_col = column(raw_items, item, "class", "genre", "genres", required=False)
    title, year_in_title = title_and_year(pl.col(title_col))
    year = pl.col(year_col).str.strip_chars().str.extract(r"^(\d{4})$", 1).cast(pl.Int32) if year_col else None
    genres = (
        pl.col(genre_col).str.strip_chars().str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
        if genre_col else pl.lit([], dtype=pl.List(pl.String))
    )
    items = raw_items.select(
        cast_column(raw_items, "item_id", pl.Int64, item.name, "an integer item id"),
        title.alias("title"),
        (pl.coalesce(year, year_in_title) if year is not None else year_in_title).alias("year"),
        genres.alias("genres"),
        pl.col("line"),
    )

    users = None
    if user is not None:
        raw_users = read_atomic(user).rename(lambda name: USER_RENAMES.get(name, name))
        column(raw_users, user, "user_id")
        users = raw_users.with_columns(
            cast_column(raw_users, "user_id", pl.Int64, user.name, "an integer user id"),
            *([cast_column(raw_users, "age", pl.Int32, user.name, "an integer age")] if "age" in raw_users.columns else []),
        ).select("user_id", pl.exclude("user_id", "line"), "line")
    return Tables(ratings, items, users, inter.name, item.name, user.name if user else None)
