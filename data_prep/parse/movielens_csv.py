"""ML-20M, ML-25M, ML-32M and ml-latest(-small): UTF-8 CSV with headers. ratings.csv
(userId,movieId,rating,timestamp; half stars, never quoted), movies.csv (movieId,title,genres; titles
with commas are quoted, `""` escapes a quote, `(no genres listed)` marks a movie without genres)."""
from __future__ import annotations

import csv
import io

import polars as pl

from data_prep.errors import DataPrepError
from data_prep.parse.fields import read_fields
from data_prep.sources import TextFile
from data_prep.parse.tables import Tables, typed_movies, typed_ratings

RATINGS_HEADER = "userId,movieId,rating,timestamp"
MOVIES_HEADER = ("movieId", "title", "genres")


def parse_movies_csv(movies: TextFile) -> pl.DataFrame:
    """movies.csv through the csv module: the file is small (≤ 90k rows) and quoting rules are exactly
    what it implements; it also gives the physical line of every row for error messages."""
    reader = csv.reader(io.StringIO(movies.utf8().decode("utf-8"), newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != MOVIES_HEADER:
            raise DataPrepError(f"{movies.name} line 1: expected header {','.join(MOVIES_HEADER)!r}, found {header}")
        rows, lines = [], []
        for row in reader:
            if len(row) != 3:
                raise DataPrepError(
                    f"{movies.name} line {reader.line_num}: expected 3 fields (movieId,title,genres), "
                    f"found {len(row)}: {row!r}"
                )
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as err:
        raise DataPrepError(f"{movies.name} line {reader.line_num}: expected a CSV row, found {err}") from None
    raw = pl.DataFrame(rows, schema={"item_id": pl.String, "title": pl.String, "genres": pl.String}, orient="row")
    raw = raw.with_columns(pl.Series("line", lines, dtype=pl.Int64))
    return typed_movies(raw, movies.name, "an integer movieId")


def parse_movielens_csv(ratings: TextFile, movies: TextFile) -> Tables:
    fields = read_fields(ratings, ",", ("user_id", "item_id", "rating", "timestamp"), header=RATINGS_HEADER)
    return Tables(typed_ratings(fields, ratings.name), parse_movies_csv(movies), None, ratings.name, movies.name, None)
