"""Stage 2, parse: the fetched files of every official MovieLens layout and of RecBole's atomic files into
`Tables` (string `fields` cast into typed columns, each row keeping its file line for errors).

    >>> from data_prep.parse import parse_raw
    >>> tables = parse_raw(RawFiles.load(raw_folder, "ml-100k"), "ml-100k")
"""
from __future__ import annotations

from data_prep.parse.dat import parse_ml1m, parse_ml10m
from data_prep.parse.ml100k import parse_ml100k
from data_prep.parse.movielens_csv import parse_movielens_csv
from data_prep.parse.recbole import parse_recbole
from data_prep.parse.tables import Tables
from data_prep.sources import RawFiles

__all__ = ["Tables", "parse_raw"]


def parse_raw(raw: RawFiles, dataset: str) -> Tables:
    """Dispatch on the layout `fetch` recorded. Encodings: latin-1 for ML-100K/1M (as GroupLens ships
    them), UTF-8 for the CSV releases and RecBole, UTF-8-else-latin-1 for ML-10M."""
    layout = raw.layout
    if layout == "recbole":
        user = f"{dataset}.user"
        return parse_recbole(raw.text(f"{dataset}.inter", "utf-8"), raw.text(f"{dataset}.item", "utf-8"),
                             raw.text(user, "utf-8") if raw.has(user) else None)
    if layout == "ml-100k":
        return parse_ml100k(raw.text("u.data", "latin-1"), raw.text("u.item", "latin-1"), raw.text("u.user", "latin-1"))
    if layout == "ml-1m":
        return parse_ml1m(raw.text("ratings.dat", "latin-1"), raw.text("movies.dat", "latin-1"),
                          raw.text("users.dat", "latin-1"))
    if layout == "ml-10m":
        return parse_ml10m(raw.text("ratings.dat", "utf-8|latin-1"), raw.text("movies.dat", "utf-8|latin-1"))
    return parse_movielens_csv(raw.text("ratings.csv", "utf-8"), raw.text("movies.csv", "utf-8"))
