"""ML-100K: `u.data` (tab: user, item, rating, timestamp), `u.item` (pipe: id, title, release date,
video date, IMDb URL, 19 genre flags in u.genre order), `u.user` (pipe: id, age, gender, occupation, zip);
all latin-1, no headers."""
from __future__ import annotations

import polars as pl

from data_prep.datasets import ML100K_GENRES
from data_prep.errors import DataPrepError
from data_prep.parse.fields import cast_column, read_fields
from data_prep.sources import TextFile
from data_prep.parse.tables import Tables, title_and_year, typed_ratings

ITEM_COLUMNS = ("item_id", "title", "release_date", "video_release_date", "imdb_url", *ML100K_GENRES)


def parse_ml100k(u_data: TextFile, u_item: TextFile, u_user: TextFile) -> Tables:
    ratings = typed_ratings(read_fields(u_data, "\t", ("user_id", "item_id", "rating", "timestamp")), u_data.name)

    raw_items = read_fields(u_item, "|", ITEM_COLUMNS)
    flags = raw_items.select(ML100K_GENRES)
    not_flag = flags.select(pl.any_horizontal(~pl.all().is_in(["0", "1"]))).to_series()
    if not_flag.any():
        row = int(not_flag.arg_true()[0])
        found = [value for value in flags.row(row) if value not in ("0", "1")][0]
        raise DataPrepError(
            f"{u_item.name} line {int(raw_items['line'][row])}: expected genre flags 0 or 1, found {found!r}"
        )
    title, year_in_title = title_and_year(pl.col("title"))
    release_year = pl.col("release_date").str.extract(r"(\d{4})\s*$", 1).cast(pl.Int32, strict=False)
    items = raw_items.select(
        cast_column(raw_items, "item_id", pl.Int64, u_item.name, "an integer item id"),
        title.alias("title"),
        pl.coalesce(year_in_title, release_year).alias("year"),
        pl.concat_list([pl.when(pl.col(g) == "1").then(pl.lit(g)) for g in ML100K_GENRES])
        .list.drop_nulls().alias("genres"),
        pl.col("line"),
    )

    raw_users = read_fields(u_user, "|", ("user_id", "age", "gender", "occupation", "zip"))
    users = raw_users.select(
        cast_column(raw_users, "user_id", pl.Int64, u_user.name, "an integer user id"),
        pl.col("gender"),
        cast_column(raw_users, "age", pl.Int32, u_user.name, "an integer age"),
        pl.col("occupation"),
        pl.col("zip"),
        pl.col("line"),
    )
    return Tables(ratings, items, users, u_data.name, u_item.name, u_user.name)
