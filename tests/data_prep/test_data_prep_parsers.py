"""Every official layout (and RecBole) parses into the canonical schema with the exact values expected."""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import md5_of

from data_prep.api import fetch, prepare
from data_prep.canonical import ITEMS_SCHEMA, RATINGS_SCHEMA


def prepared(dataset: str, source: Path, data_dir: Path, md5: str | None = "auto") -> dict[str, pl.DataFrame]:
    fetch(dataset, data_dir, source=str(source), md5=md5_of(source) if md5 == "auto" else md5)
    canonical = prepare(dataset, data_dir)
    tables = {name: pl.read_parquet(canonical / f"{name}.parquet") for name in ("ratings", "items", "users")}
    tables["source"] = json.loads((canonical / "source.json").read_text())
    return tables


def test_ml100k_latin1_flags_years_and_users(official_zip, tmp_path):
    t = prepared("ml-100k", official_zip("ml-100k"), tmp_path / "data")
    assert dict(t["ratings"].schema) == RATINGS_SCHEMA and dict(t["items"].schema) == ITEMS_SCHEMA
    assert t["ratings"].rows() == [  # canonical order: user, timestamp, item
        (1, 1, 5.0, 874965758), (1, 2, 3.0, 876893171), (2, 1, 4.0, 888550871), (2, 3, 1.0, 888551000),
        (3, 4, 2.0, 889237455), (3, 5, 5.0, 889237460)]
    items = {row["item_id"]: row for row in t["items"].iter_rows(named=True)}
    assert items[1] == {"item_id": 1, "title": "Toy Story", "year": 1995, "genres": ["Animation", "Children's", "Comedy"]}
    assert items[2]["title"] == "Misérables, Les"  # latin-1 é decoded
    assert items[3]["title"] == "Shanghai Triad (Yao a yao yao dao waipo qiao)"
    assert items[4] == {"item_id": 4, "title": "unknown", "year": None, "genres": ["unknown"]}
    assert items[5]["genres"] == ["Documentary"] and items[5]["year"] == 1994
    assert t["users"].columns == ["user_id", "gender", "age", "occupation", "zip"]
    assert t["users"].row(1) == (2, "F", 53, "other", "94043")
    assert t["source"]["rating_scale"] == {"min": 1.0, "max": 5.0, "step": 1.0}
    assert t["source"]["checksum"] == "md5:" + md5_of(official_zip("ml-100k"))
    assert t["source"]["source"] == "local" and t["source"]["layout"] == "ml-100k"


def test_ml1m_double_colon_and_occupation_labels(official_zip, tmp_path):
    t = prepared("ml-1m", official_zip("ml-1m"), tmp_path / "data")
    assert t["ratings"].filter(pl.col("user_id") == 2).rows() == [(2, 1193, 4.0, 978298413), (2, 3408, 2.0, 978299000)]
    items = {row["item_id"]: row for row in t["items"].iter_rows(named=True)}
    assert items[661]["genres"] == ["Animation", "Children's", "Musical"]
    assert items[1193] == {"item_id": 1193, "title": "One Flew Over the Cuckoo's Nest", "year": 1975, "genres": ["Drama"]}
    assert items[3409]["title"] == "Café au lait"
    assert t["users"].rows() == [(1, "F", 1, "K-12 student", "48067"), (2, "M", 56, "self-employed", "70072")]


def test_ml10m_half_stars_no_users_and_no_genres_listed(official_zip, tmp_path):
    t = prepared("ml-10m", official_zip("ml-10m"), tmp_path / "data")
    assert sorted(t["ratings"]["rating"].to_list()) == [0.5, 3.5, 4.5, 5.0]
    assert t["users"].columns == ["user_id"] and t["users"]["user_id"].to_list() == [1, 2]
    items = {row["item_id"]: row for row in t["items"].iter_rows(named=True)}
    assert items[185]["title"] == "Net, The" and items[185]["genres"] == ["Action", "Crime", "Thriller"]
    assert items[8606]["genres"] == []
    assert t["source"]["rating_scale"] == {"min": 0.5, "max": 5.0, "step": 0.5}


@pytest.mark.parametrize("dataset", ["ml-20m", "ml-25m", "ml-32m"])
def test_csv_releases_quoted_titles(official_zip, tmp_path, dataset):
    t = prepared(dataset, official_zip(dataset), tmp_path / "data")
    assert t["ratings"].rows() == [
        (1, 29, 4.0, 1112484676), (1, 2, 3.5, 1112486027), (2, 131, 5.0, 1112484727), (2, 2, 0.5, 1112484819),
        (3, 29, 2.5, 1094785740)]
    items = {row["item_id"]: row for row in t["items"].iter_rows(named=True)}
    assert items[29]["title"] == "City of Lost Children, The (Cité des enfants perdus, La)"
    assert items[29]["year"] == 1995 and items[29]["genres"] == ["Adventure", "Drama", "Fantasy", "Mystery", "Sci-Fi"]
    assert items[131]["title"] == 'Frankie Starlight "Special" Edition'
    assert items[140]["genres"] == []
    assert t["users"]["user_id"].to_list() == [1, 2, 3]


def test_latest_small_needs_an_md5_then_reads_a_sidecar(official_zip, tmp_path):
    archive = official_zip("ml-latest-small")
    (archive.parent / "ml-latest-small.zip.md5").write_text(f"MD5 (ml-latest-small.zip) = {md5_of(archive)}\n")
    t = prepared("ml-latest-small", archive, tmp_path / "data", md5=None)
    assert t["ratings"].height == 5 and t["source"]["checksum"] == "md5:" + md5_of(archive)


def test_recbole_folder_reads_columns_by_header(recbole_folder, tmp_path):
    t = prepared("ml-100k", recbole_folder, tmp_path / "data", md5=None)
    assert t["source"]["layout"] == "recbole" and t["source"]["checksum"].startswith("sha256:")
    assert t["ratings"].rows()[0] == (1, 1, 5.0, 874965758)
    items = {row["item_id"]: row for row in t["items"].iter_rows(named=True)}
    assert items[1] == {"item_id": 1, "title": "Toy Story", "year": 1995, "genres": ["Animation", "Children's", "Comedy"]}
    assert items[2]["title"] == "Misérables, Les"
    assert items[3]["year"] is None and items[3]["genres"] == ["unknown"]  # RecBole's own "unkonwn" spelling
    assert t["users"].columns == ["user_id", "gender", "age", "occupation", "zip"]
    assert t["users"].row(0) == (1, "M", 24, "technician", "85711")


def test_official_and_recbole_ml100k_agree(official_zip, recbole_folder, tmp_path):
    """The two ML-100K layouts give the same canonical rows for the movies both fixtures describe."""
    official = prepared("ml-100k", official_zip("ml-100k"), tmp_path / "a")
    recbole = prepared("ml-100k", recbole_folder, tmp_path / "b", md5=None)
    assert official["items"].filter(pl.col("item_id") <= 2).rows() == recbole["items"].filter(pl.col("item_id") <= 2).rows()
    assert official["users"].filter(pl.col("user_id") <= 2).rows() == recbole["users"].rows()
