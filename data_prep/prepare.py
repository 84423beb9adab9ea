"""`prepare`: parse whatever `fetch` left in `raw/` (official layout or RecBole atomic files) into the
canonical folder `DATA_DIR/DATASET/canonical/`."""
from __future__ import annotations

from pathlib import Path

from data_prep import paths
from data_prep.canonical import COMMAND, LEGACY, canonical_tables, write_canonical
from data_prep.datasets import spec_for
from data_prep.folder import claim
from data_prep.parse.dat import parse_ml1m, parse_ml10m
from data_prep.parse.ml100k import parse_ml100k
from data_prep.parse.movielens_csv import parse_movielens_csv
from data_prep.parse.recbole import parse_recbole
from data_prep.parse.tables import Tables
from data_prep.sources import RawFiles


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
