"""ML-1M and ML-10M: `::`-separated `.dat` files without headers. ratings.dat (UserID::MovieID::Rating::
Timestamp), movies.dat (MovieID::Title (Year)::Genre|Genre), and for ML-1M users.dat (UserID::Gender::Age::
Occupation::Zip-code), whose occupation codes are replaced by the labels of the ML-1M README."""
from __future__ import annotations

import polars as pl

from data_prep.errors import DataPrepError
from data_prep.parse.fields import cast_column, read_fields
from data_prep.sources import TextFile
from data_prep.parse.tables import Tables, typed_movies, typed_ratings

# ML-1M README, "USERS FILE DESCRIPTION": Occupation is chosen from these codes.
ML1M_OCCUPATIONS = (
    "other or not specified", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist", "self-employed",
    "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)


def parse_ratings_dat(ratings: TextFile) -> pl.DataFrame:
    return typed_ratings(read_fields(ratings, "::", ("user_id", "item_id", "rating", "timestamp")), ratings.name)


def parse_movies_dat(movies: TextFile) -> pl.DataFrame:
    return typed_movies(read_fields(movies, "::", ("item_id", "title", "genres")), movies.name, "an integer movie id")


def parse_users_dat(users: TextFile) -> pl.DataFrame:
    raw = read_fields(users, "::", ("user_id", "gender", "age", "occupation", "zip"))
    code = cast_column(raw, "occupation", pl.Int64, users.name, "an occupation code 0..20")
    labels = pl.Series(ML1M_OCCUPATIONS)
    out_of_range = (code < 0) | (code >= len(ML1M_OCCUPATIONS))
    if out_of_range.any():
        row = int(out_of_range.arg_true()[0])
        raise DataPrepError(
            f"{users.name} line {int(raw['line'][row])}, column 'occupation': expected a code 0..20, "
            f"found {raw['occupation'][row]!r}"
        )
    return raw.select(
        cast_column(raw, "user_id", pl.Int64, users.name, "an integer user id"),
        pl.col("gender"),
        cast_column(raw, "age", pl.Int32, users.name, "an integer age group"),
        labels.gather(code).alias("occupation"),
        pl.col("zip"),
        pl.col("line"),
    )


def parse_ml1m(ratings: TextFile, movies: TextFile, users: TextFile) -> Tables:
    return Tables(parse_ratings_dat(ratings), parse_movies_dat(movies), parse_users_dat(users),
                  ratings.name, movies.name, users.name)


def parse_ml10m(ratings: TextFile, movies: TextFile) -> Tables:
    return Tables(parse_ratings_dat(ratings), parse_movies_dat(movies), None, ratings.name, movies.name, None)
